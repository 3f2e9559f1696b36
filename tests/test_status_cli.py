"""`fleetgate status`: the published status for a person and as JSON, with live services."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from support.statusdata import BAD, GOOD, SECRET, example_status, record

from reconciler.cli import main
from reconciler.model import LABEL_DEVICE, LABEL_MANAGED, LABEL_SERVICE, LABEL_STACK
from reconciler.report.http import write_status
from reconciler.store import StateStore

NO_ENGINE = "tcp://127.0.0.1:1"  # nothing listens there: the engine "does not answer"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    write_status(folder, example_status())
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["status", *argv])
    out, err = capsys.readouterr()
    return code, out, err


class TestText:
    """The text form tells a person what runs here and why."""

    def test_published_status(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Revisions, outcome, pending update, failures, source and services are shown."""
        code, out, _ = _run(capsys, "--state-dir", str(state), "--device", "press-01", "--offline")
        assert code == 0
        assert f"desired     {BAD}" in out and f"applied     {GOOD}" in out
        assert f"last good   {GOOD}" in out and "(not the desired one)" in out
        assert "last pass   rolled-back at rollback" in out
        assert f"pending     {BAD} waits: outside the update windows; next window" in out
        assert f"failed      {BAD}" in out
        assert "source      fetched" in out and ": ok" in out
        assert "mqtt/broker: running (healthy, 1 restarts)" in out
        assert "digest registry.plant.example/mosquitto@sha256:" in out
        assert "services    (as of " in out

    def test_nothing_yet(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Before the agent ever ran, status says so and exits 0."""
        code, out, _ = _run(capsys, "--state-dir", str(tmp_path), "--device", "x1", "--offline")
        assert code == 0 and "nothing recorded yet" in out

    def test_record_only(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without status.json the device record (state.json) is reported."""
        StateStore(tmp_path, "press-01").save(record())
        code, out, _ = _run(capsys, "--state-dir", str(tmp_path), "--offline", "-o", "json")
        data = json.loads(out)
        assert code == 0 and data["source"] == "state.json"
        assert (data["device"], data["applied_revision"], data["outcome"]) == (
            "press-01",
            GOOD,
            "rolled-back",
        )

    def test_corrupt_status_file(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A corrupt status.json is one line on stderr and the record is shown instead."""
        (state / "devices" / "press-01" / "status.json").write_text("{")
        code, out, err = _run(
            capsys, "--state-dir", str(state), "--device", "press-01", "--offline"
        )
        assert code == 0 and "is not JSON" in err and len(err.strip().splitlines()) == 1
        assert "nothing recorded yet" in out  # no state.json in this fixture either

    def test_engine_not_answering(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """When the engine does not answer, the published services are shown with a note."""
        code, out, _ = _run(capsys, "--state-dir", str(state), "--docker-host", NO_ENGINE)
        assert code == 0 and "engine not answering" in out
        assert "mqtt/broker: running" in out


class TestJson:
    """``--output json`` is the status contract plus ``live`` and ``source``."""

    def test_json(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The document equals the published status, marked as not live."""
        code, out, _ = _run(
            capsys, "--state-dir", str(state), "--device", "press-01", "--offline", "-o", "json"
        )
        data = json.loads(out)
        assert code == 0
        assert data == {**example_status().to_json(), "live": False, "source": "status.json"}


class TestSecrets:
    """No output of ``fleetgate status`` shows a secret value."""

    @pytest.mark.parametrize("output", ["text", "json"])
    def test_no_secret(self, state: Path, capsys: pytest.CaptureFixture[str], output: str) -> None:
        """The secret-looking environment value of the desired state never appears."""
        StateStore(state, "press-01").save(record())  # state.json holds it (mode 0600)
        code, out, err = _run(capsys, "--state-dir", str(state), "--offline", "-o", output)
        assert code == 0 and SECRET not in out + err


@pytest.fixture
def sleeper(
    docker_client: docker.DockerClient,
    busybox_image: str,
    test_labels: dict[str, str],
    device_id: str,
) -> tuple[str, str]:
    """A running managed container of a test device: (device id, image)."""
    labels = {
        **test_labels,
        LABEL_MANAGED: "true",
        LABEL_DEVICE: device_id,
        LABEL_STACK: "demo",
        LABEL_SERVICE: "sleeper",
    }
    docker_client.containers.run(
        busybox_image,
        ["sleep", "300"],
        name=f"{device_id}_demo_sleeper",
        labels=labels,
        detach=True,
        init=True,
    )
    return device_id, busybox_image


@pytest.mark.docker
class TestLive:
    """With an engine, services come from a live snapshot of the managed containers."""

    def test_live_services(
        self, sleeper: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A running managed container of the device is listed with its image and state."""
        device, image = sleeper
        code, out, _ = _run(capsys, "--state-dir", str(tmp_path), "--device", device, "-o", "json")
        data = json.loads(out)
        assert code == 0 and data["live"] is True and data["source"] == "none"
        (svc,) = data["services"]
        assert (svc["stack"], svc["service"], svc["state"]) == ("demo", "sleeper", "running")
        assert svc["image"] == image and svc["container"] == f"{device}_demo_sleeper"
