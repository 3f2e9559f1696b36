"""The status HTTP server on 127.0.0.1 and the status.json file."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.statusdata import BAD, GOOD, SECRET, example_status

from reconciler.errors import UsageError
from reconciler.report.http import StatusServer, parse_listen, read_status, write_status
from reconciler.report.status import Status, status_path


class Calls:
    def __init__(self) -> None:
        self.nudges = 0
        self.event = threading.Event()

    def nudge(self) -> None:
        self.nudges += 1
        self.event.set()


def _serve(provide: Callable[[], Status], calls: Calls, **kw: object) -> Iterator[StatusServer]:
    server = StatusServer("127.0.0.1:0", provide, calls.nudge, **kw)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def live(calls: Calls) -> Iterator[StatusServer]:
    """A server whose status has a heartbeat of just now."""
    status = example_status(heartbeat_at=datetime.now(UTC))
    yield from _serve(lambda: status, calls)


def _request(server: StatusServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    host, port = server.address
    req = urllib.request.Request(f"http://{host}:{port}{path}", method=method, data=None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


class TestStatusEndpoint:
    """GET /status answers the status JSON contract."""

    def test_status_json(self, live: StatusServer) -> None:
        """The body is the status's JSON form."""
        code, kind, body = _request(live, "/status")
        assert (code, kind) == (200, "application/json")
        data = json.loads(body)
        assert (data["desired_revision"], data["applied_revision"]) == (BAD, GOOD)
        assert data["outcome"] == "rolled-back"

    def test_bound_port(self, live: StatusServer) -> None:
        """Port 0 binds a free port on the requested host, exposed as ``address``."""
        host, port = live.address
        assert host == "127.0.0.1" and port > 0

    def test_unknown_path_and_method(self, live: StatusServer) -> None:
        """Unknown paths are 404 and wrong methods 405, without calling nudge."""
        assert _request(live, "/nope")[0] == 404
        assert _request(live, "/status", "POST")[0] == 405
        assert _request(live, "/reconcile")[0] == 405

    def test_provider_failure(self, calls: Calls) -> None:
        """A failing provider answers 500 and the server keeps serving."""
        answers = iter([RuntimeError("boom")])

        def provide() -> Status:
            for error in answers:
                raise error
            return example_status()

        for server in _serve(provide, calls):
            assert _request(server, "/status")[0] == 500
            assert _request(server, "/status")[0] == 200


class TestMetrics:
    """GET /metrics is Prometheus text that prometheus_client parses."""

    def test_metrics(self, live: StatusServer) -> None:
        """Pass, revision, service, source and pending metrics carry the status's values."""
        code, kind, body = _request(live, "/metrics")
        assert code == 200 and kind.startswith("text/plain")
        m = _samples(body.decode())
        dev = {"device": "press-01"}
        assert m["fleetgate_passes_total"] == [(dev, 2.0)]
        assert sorted((s[0]["outcome"], s[1]) for s in m["fleetgate_pass_outcomes_total"]) == [
            ("rolled-back", 1.0),
            ("succeeded", 1.0),
        ]
        assert m["fleetgate_last_pass_outcome"] == [({**dev, "outcome": "rolled-back"}, 1.0)]
        assert m["fleetgate_pass_duration_seconds_count"] == [(dev, 2.0)]
        assert m["fleetgate_pass_duration_seconds_sum"] == [(dev, 42.0)]
        ((labels, value),) = m["fleetgate_revision_info"]
        assert labels["applied_revision"] == GOOD and labels["desired_revision"] == BAD
        assert value == 1.0
        assert m["fleetgate_in_sync"] == [(dev, 0.0)]
        service = {**dev, "stack": "mqtt", "service": "broker"}
        assert m["fleetgate_service_running"] == [(service, 1.0)]
        assert m["fleetgate_service_healthy"] == [(service, 1.0)]
        assert m["fleetgate_services_healthy"] == [(dev, 1.0)]
        assert m["fleetgate_source_fetch_errors_total"] == [(dev, 0.0)]
        assert m["fleetgate_source_stale"] == [(dev, 0.0)]
        assert m["fleetgate_pending_update"] == [(dev, 1.0)]
        assert m["fleetgate_next_window_timestamp_seconds"][0][1] > 0
        assert m["fleetgate_last_pass_timestamp_seconds"][0][1] > 0

    def test_before_any_pass(self, calls: Calls) -> None:
        """A fresh agent's metrics parse, with zero passes and no outcome series."""
        for server in _serve(lambda: Status(device="press-01"), calls):
            m = _samples(_request(server, "/metrics")[2].decode())
            assert m["fleetgate_passes_total"] == [({"device": "press-01"}, 0.0)]
            assert "fleetgate_last_pass_outcome" not in m


class TestNudge:
    """POST /reconcile asks the agent for a pass."""

    def test_post_reconcile(self, live: StatusServer, calls: Calls) -> None:
        """The nudge callback is called and the answer is 202 Accepted."""
        code, _, body = _request(live, "/reconcile", "POST")
        assert code == 202 and json.loads(body) == {"accepted": True}
        assert calls.event.wait(10) and calls.nudges == 1


class TestHealthz:
    """GET /healthz is 200 while the loop's heartbeat is recent, 503 otherwise."""

    def test_alive(self, live: StatusServer) -> None:
        """A heartbeat of just now is alive."""
        code, _, body = _request(live, "/healthz")
        assert code == 200 and json.loads(body) == {"alive": True}

    def test_dead(self, calls: Calls) -> None:
        """A heartbeat far older than the poll interval is not."""
        old = example_status(heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
        for server in _serve(lambda: old, calls):
            assert _request(server, "/healthz")[0] == 503

    def test_custom_liveness(self, calls: Calls) -> None:
        """The agent may supply its own liveness check."""
        for server in _serve(lambda: Status(device="press-01"), calls, alive=lambda: True):
            assert _request(server, "/healthz")[0] == 200


class TestSecrets:
    """No endpoint shows a secret value."""

    def test_no_secret_in_any_endpoint(self, live: StatusServer) -> None:
        """The secret-looking environment value appears in neither /status nor /metrics."""
        for path in ("/status", "/metrics", "/healthz"):
            assert SECRET.encode() not in _request(live, path)[2]


class TestStatusFile:
    """status.json is written atomically under the device folder and reads back."""

    def test_write_and_read(self, tmp_path: Path) -> None:
        """The written file is the JSON contract and parses back to the same status."""
        status = example_status()
        path = write_status(tmp_path, status)
        assert (
            path
            == status_path(tmp_path, "press-01")
            == (tmp_path / "devices" / "press-01" / "status.json")
        )
        assert json.loads(path.read_text()) == status.to_json()
        assert read_status(path) == status
        assert SECRET not in path.read_text()
        assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temp left

    def test_missing_and_corrupt(self, tmp_path: Path) -> None:
        """A missing file is None; a corrupt one is a one-line ValueError."""
        assert read_status(tmp_path / "status.json") is None
        (tmp_path / "status.json").write_text("{not json")
        with pytest.raises(ValueError, match="is not JSON"):
            read_status(tmp_path / "status.json")


class TestListen:
    """statusListen is host:port."""

    def test_forms(self) -> None:
        """IPv4, bracketed IPv6 and a bare port are accepted."""
        assert parse_listen("127.0.0.1:9180") == ("127.0.0.1", 9180)
        assert parse_listen("[::1]:0") == ("::1", 0)
        assert parse_listen(":9180") == ("0.0.0.0", 9180)

    @pytest.mark.parametrize("bad", ["9180", "host:", "h:99999", "h:x"])
    def test_malformed(self, bad: str) -> None:
        """Anything else is a usage error naming the setting."""
        with pytest.raises(UsageError, match="statusListen"):
            parse_listen(bad)

    def test_port_in_use(self, live: StatusServer, calls: Calls) -> None:
        """A port that is taken is a one-line usage error."""
        host, port = live.address
        other = StatusServer(f"{host}:{port}", lambda: Status(device="x"), calls.nudge)
        with pytest.raises(UsageError, match="cannot listen"):
            other.start()
