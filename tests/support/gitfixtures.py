"""Git server fixtures on 127.0.0.1: a ``git daemon`` and a smart-HTTP server.

``served`` is the directory both servers export; put bare or working repositories
in it (``support.gitserver.Origin``) and address them with ``daemon.url(name)`` /
``http.url(name)``. Servers that cannot start fail the test loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gitserver import GitDaemon, SmartHttpServer


@pytest.fixture
def served(tmp_path: Path) -> Path:
    base = tmp_path / "served"
    base.mkdir()
    return base


@pytest.fixture
def daemon(served: Path) -> Iterator[GitDaemon]:
    server = GitDaemon(served)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http(served: Path) -> Iterator[SmartHttpServer]:
    server = SmartHttpServer(served)
    server.start()
    yield server
    server.stop()
