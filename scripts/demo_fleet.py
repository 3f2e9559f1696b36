"""The demo's fleet view (issue 10), used by ``demo.py``: a local Mosquitto on 127.0.0.1
that the demo agent reports to, ``fleetgate fleet status`` and the ``fleet serve`` page.

The broker and the page keep running after the demo, like its containers, so the page
address it prints stays useful; ``scripts/demo --clean`` stops both. Their process ids
are kept in ``<demo dir>/fleet.json`` and a process is only ever signalled while its
command line still names the demo folder (never a recycled pid).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from demo_tools import answers, free_port, stop_pid

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class FleetView:
    """The broker and the page of one demo folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.record = folder / "fleet.json"
        self.broker_port = 0
        self.page_port = 0

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker_port}"

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.page_port}/"

    def _wait(self, port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
        deadline = time.monotonic() + 20
        while not answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"{what} did not start: {tail[0]}")
            time.sleep(0.05)

    def _save(self, **values: int) -> None:
        known = json.loads(self.record.read_text()) if self.record.exists() else {}
        self.record.write_text(json.dumps({**known, **values}))

    def start_broker(self) -> str:
        """A Mosquitto on a free loopback port (anonymous: it listens on 127.0.0.1 only)."""
        if not Path(MOSQUITTO).is_file():
            raise RuntimeError("mosquitto is missing (Debian: apt-get install mosquitto)")
        self.broker_port = free_port()
        config = self.folder / "mosquitto.conf"
        lines = [f"listener {self.broker_port} 127.0.0.1", "allow_anonymous true"]
        if os.geteuid() == 0:  # it would drop root for a user who cannot read the folder
            lines.append("user root")
        config.write_text("\n".join(lines) + "\n")
        log = self.folder / "mosquitto.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [MOSQUITTO, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the demo leaves it to --clean
            )
        self._save(broker_pid=process.pid, broker_port=self.broker_port)
        self._wait(self.broker_port, process, "mosquitto", log)
        return self.broker_url

    def start_page(self, fleetgate: Path, repo: Path, env: dict[str, str]) -> str:
        """``fleetgate fleet serve`` of the broker and the demo repository."""
        self.page_port = free_port()
        log = self.folder / "fleet-serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(fleetgate),
                    "fleet",
                    "serve",
                    "--broker",
                    self.broker_url,
                    "--repo",
                    str(repo),
                    "--listen",
                    f"127.0.0.1:{self.page_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._save(page_pid=process.pid, page_port=self.page_port)
        self._wait(self.page_port, process, "fleetgate fleet serve", log)
        return self.page_url

    def stop(self) -> list[str]:
        """Stop the broker and the page this folder started; one line per thing removed."""
        lines: list[str] = []
        try:
            known = json.loads(self.record.read_text())
        except (OSError, ValueError):
            known = {}
        marker = str(self.folder)
        for key, what in (("page_pid", "fleetgate fleet serve"), ("broker_pid", "mosquitto")):
            pid = known.get(key)
            if isinstance(pid, int) and stop_pid(pid, marker, grace=10.0):
                lines.append(f"stopped {what} (pid {pid})")
        for name in ("fleet.json", "mosquitto.conf", "mosquitto.log", "fleet-serve.log"):
            path = self.folder / name
            if path.exists():
                path.unlink()
                lines.append(f"removed {path.name}")
        return lines
