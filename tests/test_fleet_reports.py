"""The fleet's cheap report check agrees with the full status parser on good and bad data."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.fleet.reports import check_status, parse_status
from reconciler.report.status import (
    FailedEntry,
    PendingUpdate,
    ServiceStatus,
    Status,
    status_from_json,
)

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def _full() -> dict[str, Any]:
    service = ServiceStatus(
        "s", "web", "s_web", "img:1", "sha256:" + "e" * 64, "running", "healthy", 0, "f" * 64
    )
    status = Status(
        "d1",
        applied_revision="a" * 40,
        failed_revisions=(FailedEntry("b" * 40, "health", NOW),),
        outcome="succeeded",
        services=(service,),
        pending_update=PendingUpdate("c" * 40, "window", NOW),
        heartbeat_at=NOW,
        observed_at=NOW,
    )
    document: dict[str, Any] = json.loads(json.dumps(status.to_json()))
    document["counters"]["passes"] = {"succeeded": 3}
    document["warnings"] = ["w"]
    return document


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            document = document[key]
        document[last] = value

    return change


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            document = document[key]
        del document[last]

    return change


CHANGES = {
    "unchanged": lambda d: None,
    "no device": _drop(("device",)),
    "services a string": _set(("services",), "all"),
    "services a number": _set(("services",), 5),
    "service a list": _set(("services", 0), ["x"]),
    "service extra key": _set(("services", 0, "extra"), 1),
    "service missing key": _drop(("services", 0, "image")),
    "bad heartbeat": _set(("heartbeat_at",), "yesterday"),
    "heartbeat a number": _set(("heartbeat_at",), 5),
    "empty heartbeat": _set(("heartbeat_at",), ""),
    "failed a string": _set(("failed_revisions",), "x"),
    "failed without at": _drop(("failed_revisions", 0, "at")),
    "failed at a number": _set(("failed_revisions", 0, "at"), 5),
    "pending a list": _set(("pending_update",), ["x"]),
    "pending empty": _set(("pending_update",), {}),
    "pending without reason": _drop(("pending_update", "reason")),
    "pending bad window": _set(("pending_update", "next_window"), "soon"),
    "interval a word": _set(("poll_interval_seconds",), "often"),
    "interval a list": _set(("poll_interval_seconds",), [1]),
    "counters a list": _set(("counters",), [1]),
    "passes null": _set(("counters", "passes"), None),
    "pass count a word": _set(("counters", "passes", "succeeded"), "many"),
    "fetch errors a dict": _set(("counters", "fetch_errors"), {"a": 1}),
    "seconds a word": _set(("counters", "pass_seconds_total"), "long"),
    "warnings a number": _set(("warnings",), 7),
    "unknown stage": _set(("stage",), "launch"),
    "stage a number": _set(("stage",), 3),
    "no stage": _set(("stage",), None),
    "no counters": _drop(("counters",)),
}


class TestCheckStatus:
    @pytest.mark.parametrize("name", sorted(CHANGES))
    def test_agrees_with_the_full_parser(self, name: str) -> None:
        """A document the full parser rejects is rejected, one it reads is accepted."""
        document = copy.deepcopy(_full())
        CHANGES[name](document)
        try:
            status_from_json(document)
            full = None
        except ValueError as e:
            full = str(e)
        try:
            check_status(document)
            cheap = None
        except ValueError as e:
            cheap = str(e)
        assert (full is None) == (cheap is None), (full, cheap)
        if full and full.startswith("status does not match its schema"):
            assert cheap is not None and cheap.startswith("status does not match its schema")

    def test_a_bad_report_is_one_escaped_line(self) -> None:
        """A rejected report becomes one problem line with its control characters escaped."""
        document = _full()
        document["services"] = [{"\x1b[2J": 1}]
        shown, problem = parse_status("d1", json.dumps(document).encode(), "topic t")
        assert shown is None
        assert problem.startswith("topic t: status does not match its schema")
        assert "\x1b" not in problem and "\n" not in problem
