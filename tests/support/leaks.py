"""Which test left Docker objects behind: a report at the end of the run.

The shared engine has about 30 address pools for bridge networks; a test that leaves
its networks behind makes every later test that creates one fail with "could not find
an available, non-overlapping IPv4 address pool" (it happened in CI once). After each
test that used the engine, the networks and containers this run owns (see
:func:`support.engine.owned`) are compared with those before it; what a test added
and its teardown did not remove is named in the terminal summary. Bridges in the
host's network namespace that no engine knows (``br-<id>`` of a network the engine
does not list: a killed engine's leftovers) take pools too, so they are counted at
the start and at the end of the run.

Objects a class- or module-scoped fixture keeps on purpose show up under the test
that first created them; the report is for finding leaks, it fails nothing.

Under pytest-xdist each worker is its own run (its own ``RUN_ID``) and finds its own
leaks; it hands them to the controller in ``workeroutput``, and the controller, which
alone writes the terminal, prints them and counts the bridges before and after all
workers.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from support.engine import RUN_ID, owned

_STASH = pytest.StashKey[dict[str, list[str]]]()
_BRIDGES = pytest.StashKey[list[str]]()


def _mine(client: docker.DockerClient) -> set[str]:
    """Names of the networks and containers this run owns, ``net:``/``ctr:`` prefixed."""
    names = {
        f"net:{n.name}" for n in client.networks.list() if owned(n.attrs.get("Labels"), RUN_ID)
    }
    for c in client.containers.list(all=True, sparse=True):
        if owned(c.attrs.get("Labels"), RUN_ID):
            names.add(f"ctr:{(c.attrs.get('Names') or ['?'])[0].lstrip('/')}")
    return names


def unknown_bridges(client: docker.DockerClient) -> list[str]:
    """Host bridges ``br-<id>`` whose network the engine does not list."""
    known = {n.id[:12] for n in client.networks.list()}
    return sorted(
        p.name
        for p in Path("/sys/class/net").glob("br-*")
        if p.name.removeprefix("br-") not in known
    )


def _uses_engine(item: pytest.Item) -> bool:
    return "docker_client" in getattr(item, "fixturenames", ()) or bool(
        item.get_closest_marker("docker")
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if not _uses_engine(item):
        yield
        return
    before: set[str] | None = None
    with contextlib.suppress(docker.errors.DockerException, OSError):
        client = docker.from_env(timeout=30)
        before = _mine(client)
        client.close()
    yield
    if before is None:
        return
    with contextlib.suppress(docker.errors.DockerException, OSError):
        client = docker.from_env(timeout=30)
        left = sorted(_mine(client) - before)
        client.close()
        if left:
            item.config.stash.setdefault(_STASH, {})[item.nodeid] = left


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _is_worker(session.config):
        return
    with contextlib.suppress(docker.errors.DockerException, OSError):
        client = docker.from_env(timeout=30)
        session.config.stash[_BRIDGES] = unknown_bridges(client)
        client.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _is_worker(config):  # the controller prints what its workers found
        found = json.dumps(config.stash.get(_STASH, {}))
        config.workeroutput["fleetgate_leaks"] = found  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist controller: take over what a finished worker found."""
    output = getattr(node, "workeroutput", {}) or {}
    found: dict[str, list[str]] = json.loads(output.get("fleetgate_leaks", "{}"))
    if found:
        config: pytest.Config = node.config  # type: ignore[attr-defined]
        config.stash.setdefault(_STASH, {}).update(found)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    leaks = config.stash.get(_STASH, {})
    start = config.stash.get(_BRIDGES, None)
    end: list[str] | None = None
    with contextlib.suppress(docker.errors.DockerException, OSError):
        client = docker.from_env(timeout=30)
        end = unknown_bridges(client)
        client.close()
    if not leaks and not start and not end:
        return
    terminalreporter.section("Docker objects left behind")
    for nodeid, names in leaks.items():
        terminalreporter.line(f"{nodeid}: {', '.join(names)}")
    if start is not None and end is not None:
        terminalreporter.line(
            f"host bridges no engine knows: {len(start)} at the start, {len(end)} at the end"
        )
