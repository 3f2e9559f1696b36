"""The pure fleet view: join, categories, summary, filters, JSON document, text table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from reconciler.fleet.reports import Report, reports_from_messages
from reconciler.fleet.table import render_text
from reconciler.fleet.view import (
    PAGE_STATUS_FIELDS,
    build_view,
    dumps_document,
    dumps_view,
    filter_view,
    page_document,
    summary,
    to_json,
)

HEAD = "a" * 40
OLD = "b" * 40
NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
DEVICES = {
    "d1": {"site": "plant-a", "ring": "lab"},
    "d2": {"site": "plant-a"},
    "d3": {"site": "plant-b"},
    "d4": {},
}


def _status(device: str, applied: str, outcome: str, **extra: object) -> dict[str, object]:
    return {
        "device": device,
        "applied_revision": applied,
        "outcome": outcome,
        "reason": f"{outcome} here",
        "heartbeat_at": (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


REPORTS = {
    "d1": Report("d1", _status("d1", HEAD, "succeeded"), True),
    "d2": Report(
        "d2",
        _status(
            "d2",
            OLD,
            "waiting",
            pending_update={"revision": HEAD, "reason": "window", "next_window": None},
        ),
        True,
    ),
    "d3": Report("d3", _status("d3", OLD, "rolled-back"), False),
    "x9": Report("x9", _status("x9", HEAD, "failed"), True),
}


class TestBuildView:
    def test_every_repository_device_is_listed_and_strangers_apart(self) -> None:
        """Devices of the repository are rows (never-reporting ones too); others are unknown."""
        view = build_view(DEVICES, REPORTS, head=HEAD, now=NOW)
        assert [r.device for r in view.devices] == ["d1", "d2", "d3", "d4"]
        assert view.devices[3].status is None and view.devices[3].stale is None
        assert [r.device for r in view.unknown] == ["x9"]

    def test_categories_and_summary(self) -> None:
        """On head, behind, waiting, rolled back, offline and silent are counted per device."""
        counts = summary(build_view(DEVICES, REPORTS, head=HEAD, now=NOW))
        assert counts["devices"] == 4 and counts["reported"] == 3
        assert (counts["on_head"], counts["behind"], counts["waiting"]) == (1, 2, 1)
        assert (counts["rolled_back"], counts["offline"], counts["silent"]) == (1, 1, 1)
        assert counts["outcomes"] == {"none": 1, "rolled-back": 1, "succeeded": 1, "waiting": 1}
        assert counts["waves"] == {"": counts["outcomes"]}
        assert counts["unknown_devices"] == 1

    def test_an_old_report_is_stale(self) -> None:
        """A report older than stale_after is stale and counts as offline."""
        view = build_view(DEVICES, REPORTS, head=HEAD, now=NOW + timedelta(hours=1))
        assert all(r.stale for r in view.devices if r.status is not None)
        assert summary(view)["offline"] == 3

    def test_filters(self) -> None:
        """--selector, --outcome and --behind keep only the matching devices."""
        view = build_view(DEVICES, REPORTS, head=HEAD, now=NOW)
        pick = filter_view(view, selector={"site": "plant-a"})
        assert [r.device for r in pick.devices] == ["d1", "d2"]
        assert [r.device for r in filter_view(view, behind=True).devices] == ["d2", "d3"]
        assert [r.device for r in filter_view(view, outcomes=["none"]).devices] == ["d4"]

    def test_json_document_follows_the_contract(self) -> None:
        """The document has devices with the §6 fields, a summary and unknown devices."""
        document = json.loads(json.dumps(to_json(build_view(DEVICES, REPORTS, head=HEAD, now=NOW))))
        first = document["devices"][0]
        assert set(first) == {
            "device",
            "wave",
            "labels",
            "online",
            "last_report_at",
            "stale",
            "status",
        }
        assert first["wave"] == "" and first["status"] == REPORTS["d1"].status
        assert document["devices"][3]["status"] is None
        assert document["unknown_devices"][0]["device"] == "x9"
        assert document["rollout"][0] == {
            "revision": OLD,
            "head": False,
            "devices": 2,
            "behind": 2,
            "waiting": 1,
            "rolled_back": 1,
            "offline": 1,
        }

    def test_printed_document_is_the_same_json_one_device_a_line(self) -> None:
        """--output json prints the document itself, each device on a line of its own."""
        document = to_json(build_view(DEVICES, REPORTS, head=HEAD, now=NOW))
        text = dumps_document(document)
        assert json.loads(text) == document
        lines = text.splitlines()
        for row in document["devices"]:
            assert f"    {json.dumps(row, sort_keys=True)}," in lines or (
                f"    {json.dumps(row, sort_keys=True)}" in lines
            )

    def test_printed_view_reuses_status_texts_and_is_the_same_text(self) -> None:
        """Statuses received as plain one-line JSON are printed as received: the output is
        the text the re-encoded document gives, and a report's own spacing stays."""
        payloads = {
            f"fleetgate/{d}/status": json.dumps(r.status, sort_keys=True).encode()
            for d, r in REPORTS.items()
            if r.status is not None
        }
        payloads["fleetgate/d3/status"] = json.dumps(REPORTS["d3"].status, indent=1).encode()
        payloads["fleetgate/d2/status"] = (
            json.dumps(REPORTS["d2"].status).replace('"waiting"', '"waiting \\u00e9"').encode()
        )
        reports, problems = reports_from_messages(payloads, "fleetgate")
        assert problems == ()
        assert reports["d1"].text is not None
        assert reports["d2"].text is not None  # escaped non-ASCII stays plain text
        assert reports["d3"].text is None  # several lines: re-encoded on one
        view = build_view(DEVICES, reports, head=HEAD, now=NOW)
        extra = {"waves": []}
        assert json.loads(dumps_view(view, extra)) == {**to_json(view), **extra}
        d2 = next(r for r in view.devices if r.device == "d2")
        assert d2.status_text is not None and d2.status_text in dumps_view(view, extra)
        same = build_view(DEVICES, {**reports, "d2": REPORTS["d2"]}, head=HEAD, now=NOW)
        assert dumps_view(same, extra) == dumps_document({**to_json(same), **extra})

    def test_page_document_keeps_only_what_the_page_shows(self) -> None:
        """/api/fleet/page is the document with each status cut to the page's fields."""
        document = to_json(build_view(DEVICES, REPORTS, head=HEAD, now=NOW))
        page = page_document(document)
        assert page["summary"] == document["summary"]
        for full, cut in zip(document["devices"], page["devices"], strict=True):
            assert cut["device"] == full["device"]
            if full["status"] is None:
                assert cut["status"] is None
            else:
                assert set(cut["status"]) == set(PAGE_STATUS_FIELDS)
                assert cut["status"]["outcome"] == full["status"]["outcome"]


class TestTable:
    def test_grouped_by_site_with_subject_and_head_marker(self) -> None:
        """The table groups by site and shows short SHA, subject and whether it is the head."""
        text = render_text(build_view(DEVICES, REPORTS, head=HEAD, now=NOW), {HEAD: "ship it"})
        assert text.index("site plant-a") < text.index("site plant-b")
        assert "aaaaaaaaaaaa ship it (head)" in text
        assert "bbbbbbbbbbbb (behind)" in text
        assert "never reported" in text
        assert "reporting, but not in the repository" in text


class TestMessages:
    def test_retained_messages_become_reports(self) -> None:
        """status and online topics join per device; junk topics are one problem each."""
        messages = {
            "fleetgate/d1/status": json.dumps(_status("d1", HEAD, "succeeded")).encode(),
            "fleetgate/d1/online": b"false",
            "fleetgate/d2/online": b"true",
            "fleetgate/D%/status": b"{}",
            "fleetgate/d3/status": b"not json",
        }
        reports, problems = reports_from_messages(messages, "fleetgate")
        assert reports["d1"].online is False and reports["d1"].status is not None
        assert reports["d2"].status is None and reports["d2"].online is True
        assert reports["d3"].status is None
        assert len(problems) == 2
