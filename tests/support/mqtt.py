"""A real Mosquitto broker on 127.0.0.1 for tests (Debian ``mosquitto``).

:class:`Mosquitto` writes a config with a password file (``mosquitto_passwd -b``) and
an ACL: each device writes only ``fleetgate/<its user name>/#``, the ``viewer`` reads
``fleetgate/#``. ``anonymous`` brokers (no users) are for tests about the protocol only.
A missing ``mosquitto`` binary fails the test (never skips): CI installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from support.gitserver import free_port
from support.wait import wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VIEWER = "viewer"


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class Mosquitto:
    """One broker process; :meth:`stop` / :meth:`start` keep the port and persistence."""

    def __init__(self, folder: Path, users: Mapping[str, str] | None = None) -> None:
        if not Path(MOSQUITTO).is_file():
            pytest.fail("mosquitto is not installed (Debian package mosquitto; scripts/test)")
        self.folder = folder
        self.port = free_port()
        self.users = dict(users or {})
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "log_dest stderr",
            "log_type error",
        ]
        if os.geteuid() == 0:  # mosquitto drops root for its own user, who cannot read tmp
            lines.append("user root")
        if self.users:
            passwords = folder / "passwd"
            passwords.touch(mode=0o600)
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            acl = folder / "acl"
            acl.write_text(
                f"user {VIEWER}\ntopic read fleetgate/#\n\npattern write fleetgate/%u/#\n"
            )
            lines += ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "mosquitto.log").open("ab"),
        )
        wait_for(lambda: _answers(self.port), timeout=10, what=f"mosquitto on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def running_broker(folder: Path, users: Mapping[str, str] | None = None) -> Iterator[Mosquitto]:
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder, users)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
