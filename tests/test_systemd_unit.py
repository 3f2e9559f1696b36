"""packaging/systemd/fleetgate.service, checked by systemd itself (``systemd-analyze``).

``verify`` exits 0 even for unknown keys and bad values (it only warns), so the tests
assert that it prints nothing. ExecStart is pointed at an executable that exists here
(the unit names /usr/local/bin/fleetgate, where a wheel install puts it); nothing else
of the unit is changed. A missing systemd-analyze fails the test (Debian: systemd).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "packaging" / "systemd" / "fleetgate.service"


def verify(text: str, folder: Path) -> str:
    """What ``systemd-analyze verify`` says about a unit with ``text`` (empty: nothing)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian: apt-get install systemd)"
    unit = folder / "fleetgate.service"
    unit.write_text(text.replace("/usr/local/bin/fleetgate", shutil.which("true") or "/bin/true"))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else " (exit != 0)")


def service() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


class TestUnit:
    """The unit file is valid and keeps the agent in a sandbox that still reaches Docker."""

    def test_systemd_finds_nothing_to_say(self, tmp_path: Path) -> None:
        """``systemd-analyze verify`` accepts every line of the unit without a warning."""
        assert verify(UNIT.read_text(), tmp_path) == ""

    def test_verify_would_report_a_mistake(self, tmp_path: Path) -> None:
        """A misspelt value is reported, so the check above can fail."""
        broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strcit")
        assert "strcit" in verify(broken, tmp_path)

    def test_hardening_is_in_place(self) -> None:
        """The filesystem is read-only but for the state dir; no privileges can be gained;
        it restarts on failure; Unix sockets (the Docker socket) stay allowed."""
        unit = service()
        assert unit["ProtectSystem"] == "strict"
        assert unit["ReadWritePaths"] == "/var/lib/fleetgate"
        assert unit["NoNewPrivileges"] == "yes"
        assert unit["Restart"] == "on-failure"
        assert "AF_UNIX" in unit["RestrictAddressFamilies"].split()
        assert re.fullmatch(r"/usr/local/bin/fleetgate agent --config \S+", unit["ExecStart"])

    @pytest.mark.parametrize("key", ["ProtectHome", "PrivateTmp", "PrivateDevices",
                                     "ProtectKernelModules", "RestrictSUIDSGID"])  # fmt: skip
    def test_more_sandboxing(self, key: str) -> None:
        """Further sandboxing options are switched on."""
        assert service()[key] == "yes"
