"""The status value (pure): built from the record, the last pass, a snapshot and the fetch state."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta

from support.statusdata import (
    BAD,
    GOOD,
    NOW,
    SECRET,
    desired,
    example_status,
    observed,
    record,
)

from reconciler.model import (
    ObservedState,
)
from reconciler.report.status import (
    SOURCE_UNREACHABLE,
    FetchState,
    Tally,
    build_status,
    secret_values,
    services_of,
    status_from_json,
)

SHA = re.compile(r"^[0-9a-f]{40}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class TestBuildStatus:
    """A status holds the revisions, the outcome, the services and the source in one value."""

    def test_revisions_and_outcome(self) -> None:
        """Desired comes from the last pass; applied, last good and failures from the record."""
        s = example_status()
        assert (s.desired_revision, s.applied_revision, s.last_good_revision) == (BAD, GOOD, GOOD)
        assert [f.revision for f in s.failed_revisions] == [BAD]
        assert (s.outcome, s.stage) == ("rolled-back", "rollback")
        assert s.pass_finished_at == NOW - timedelta(seconds=1)

    def test_last_good_at_is_when_the_last_good_revision_passed(self) -> None:
        """last_good_at is the record's last-good time and round-trips through the JSON."""
        s = example_status()
        assert s.last_good_at == NOW - timedelta(hours=2)
        assert status_from_json(s.to_json()).last_good_at == s.last_good_at

    def test_without_a_pass(self) -> None:
        """Without a last pass, the outcome stored in the record is reported."""
        s = build_status(record(), now=NOW)
        assert (s.outcome, s.reason, s.desired_revision) == ("rolled-back", "rolled back", BAD)
        assert s.services == () and s.observed_at is None and not s.stale

    def test_services(self) -> None:
        """Each managed container is a service with the repo digest of the repository it runs."""
        (svc,) = example_status().services
        assert (svc.stack, svc.service, svc.state, svc.health) == (
            "mqtt",
            "broker",
            "running",
            "healthy",
        )
        assert svc.image_digest == "registry.plant.example/mosquitto@sha256:" + "2" * 64
        assert (svc.restart_count, svc.config_hash) == (1, "c0ffee")

    def test_digest_pinned_reference(self) -> None:
        """A container created from a digest reference reports that reference as its digest."""
        ref = "registry.plant.example/mosquitto@sha256:" + "3" * 64
        snap = observed()
        pinned = ObservedState(
            "press-01",
            containers=(replace(snap.containers[0], image=ref, image_id="sha256:none"),),
            images=(),
        )
        assert services_of(pinned)[0].image_digest == ref


class TestStale:
    """The status is stale when no fetch succeeded within three poll intervals."""

    def test_recent_fetch(self) -> None:
        """A fetch two intervals ago is fresh."""
        fetch = FetchState().fetched(NOW - timedelta(seconds=120))
        assert not build_status(record(), now=NOW, fetch=fetch, poll_interval=60).stale

    def test_old_fetch(self) -> None:
        """A last success more than three intervals ago is stale, whatever came after."""
        fetch = FetchState().fetched(NOW - timedelta(seconds=181)).failed("down", NOW)
        assert build_status(record(), now=NOW, fetch=fetch, poll_interval=60).stale

    def test_never_fetched_but_failed(self) -> None:
        """Only failures so far is stale; no attempt yet is not."""
        assert build_status(record(), now=NOW, fetch=FetchState().failed("x", NOW)).stale
        assert not build_status(record(), now=NOW, fetch=FetchState()).stale


class TestSourceUnreachable:
    """A fetch that failed after the last pass makes the outcome source-unreachable."""

    def test_failed_fetch_after_pass(self) -> None:
        """The error is the reason, with the URL credentials redacted."""
        error = "cannot fetch https://bot:tok3n-value@git.plant.example/fleet.git: refused"
        fetch = FetchState().fetched(NOW - timedelta(minutes=5)).failed(error, NOW)
        s = example_status(fetch=fetch)
        assert (s.outcome, s.stage) == (SOURCE_UNREACHABLE, "source")
        assert "tok3n-value" not in s.reason and "https://***@git.plant.example" in s.reason
        assert s.fetch.error == s.reason and s.fetch.succeeded_at == NOW - timedelta(minutes=5)

    def test_failed_fetch_before_pass(self) -> None:
        """A pass that ran after the failed fetch keeps its own outcome."""
        fetch = FetchState().failed("down", NOW - timedelta(minutes=5))
        assert example_status(fetch=fetch).outcome == "rolled-back"


class TestJson:
    """The JSON form is the documented contract and round-trips."""

    def test_fields(self) -> None:
        """Every documented field is present, SHAs are full and times are RFC 3339 UTC."""
        data = example_status().to_json()
        assert set(data) >= {
            "device", "desired_revision", "applied_revision", "last_good_revision",
            "failed_revisions", "outcome", "reason", "stage", "pass_started_at",
            "pass_finished_at", "services", "pending_update", "last_fetch_at",
            "last_fetch_error", "stale", "agent_version",
        }  # fmt: skip
        for key in ("desired_revision", "applied_revision", "last_good_revision"):
            assert SHA.match(data[key])
        for key in ("pass_started_at", "pass_finished_at", "last_fetch_at", "heartbeat_at"):
            assert RFC3339.match(data[key])
        assert RFC3339.match(data["pending_update"]["next_window"])
        assert set(data["failed_revisions"][0]) == {"revision", "reason", "at"}
        assert set(data["services"][0]) == {
            "stack", "service", "container", "image", "image_digest", "state", "health",
            "restart_count", "config_hash",
        }  # fmt: skip
        assert data["counters"]["passes"] == {"rolled-back": 1, "succeeded": 1}

    def test_round_trip(self) -> None:
        """Parsing the JSON gives back the same value."""
        s = example_status()
        assert status_from_json(json.loads(json.dumps(s.to_json()))) == s


class TestSecrets:
    """Secret values never appear in the status, whatever the messages say."""

    def test_secret_scrubbed_everywhere(self) -> None:
        """A secret-looking environment value is absent from the JSON, reasons included."""
        text = json.dumps(example_status().to_json())
        assert SECRET not in text
        assert "***" in text

    def test_secret_values(self) -> None:
        """Only values of secret-looking variables count as secrets."""
        assert secret_values(desired()) == frozenset({SECRET})


class TestTally:
    """Counters accumulate outcomes, durations and fetch errors."""

    def test_counts(self) -> None:
        """Two passes and a fetch error are counted with their total duration."""
        t = Tally().counted("succeeded", 1.5).counted("succeeded", 0.5).fetch_failed()
        assert (t.passes, t.passes_total, t.fetch_errors) == ((("succeeded", 2),), 2, 1)
        assert (t.pass_seconds_total, t.last_pass_seconds) == (2.0, 0.5)


class TestAlive:
    """The loop is alive while its heartbeat is recent."""

    def test_heartbeat(self) -> None:
        """A heartbeat within the limit is alive; an older one or none is not."""
        s = example_status(heartbeat_at=NOW - timedelta(seconds=30))
        assert s.alive(NOW, 60) and not s.alive(NOW + timedelta(seconds=31), 60)
        assert not example_status(heartbeat_at=None).alive(NOW, 60)
