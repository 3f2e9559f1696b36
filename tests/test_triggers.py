"""Triggers: jitter, backoff, the wakeup set, file-event filtering, Docker events, signals."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.wait import wait_for

from reconciler.agent.triggers import (
    EngineEventWatch,
    FileWatch,
    Wakeup,
    backoff,
    install_signal_handlers,
    is_change,
    jittered,
)
from reconciler.engine.docker import ContainerEvent
from reconciler.errors import EngineError


class TestJitterAndBackoff:
    """The timer spreads polls by ±10%; failures stretch the wait up to a cap."""

    def test_jitter_stays_within_ten_percent(self) -> None:
        """The extremes of the random draw give 0.9 and 1.1 times the interval."""
        assert jittered(60.0, 0.0) == pytest.approx(54.0)
        assert jittered(60.0, 0.5) == pytest.approx(60.0)
        assert jittered(60.0, 0.999999) == pytest.approx(66.0, rel=1e-4)

    def test_backoff_doubles_and_is_capped(self) -> None:
        """Each failure doubles the step; the cap bounds it; jitter stays in the upper half."""
        assert backoff(0, 1.0, 300.0, 0.5) == 1.0
        assert backoff(1, 1.0, 300.0, 1.0) == pytest.approx(1.0)
        assert backoff(4, 1.0, 300.0, 1.0) == pytest.approx(8.0)
        assert backoff(4, 1.0, 300.0, 0.0) == pytest.approx(4.0)
        assert backoff(40, 1.0, 300.0, 1.0) == pytest.approx(300.0)


class TestWakeup:
    """Nudges from any thread wake the loop once, with their reasons."""

    def test_nudges_are_collected_and_cleared(self) -> None:
        """Reasons that arrived before the wait are returned at once and then forgotten."""
        wakeup = Wakeup()
        wakeup.nudge("sighup")
        wakeup.nudge("http")
        assert wakeup.wait(10.0) == frozenset({"sighup", "http"})
        assert wakeup.wait(0.0) == frozenset()

    def test_a_nudge_from_another_thread_ends_the_wait(self) -> None:
        """A waiting loop wakes as soon as another thread nudges."""
        wakeup = Wakeup()
        threading.Timer(0.05, wakeup.nudge, args=("http",)).start()
        assert wakeup.wait(30.0) == frozenset({"http"})


class TestFileEvents:
    """Only changes that may alter the desired state wake the agent."""

    def test_worktree_changes_count(self, tmp_path: Path) -> None:
        """Created, modified, deleted and moved files in the work tree count."""
        for kind in ("created", "modified", "deleted", "moved"):
            assert is_change(kind, str(tmp_path / "devices" / "a.yaml"), tmp_path)

    def test_reads_do_not_count(self, tmp_path: Path) -> None:
        """Opening or closing a file without writing is not a change."""
        for kind in ("opened", "closed_no_write"):
            assert not is_change(kind, str(tmp_path / "fleet.yaml"), tmp_path)

    def test_only_ref_updates_inside_git_count(self, tmp_path: Path) -> None:
        """A commit moves a ref; git rewriting its index or objects does not count."""
        git = tmp_path / ".git"
        assert is_change("modified", str(git / "refs" / "heads" / "main"), tmp_path)
        assert is_change("modified", str(git / "HEAD"), tmp_path)
        assert not is_change("modified", str(git / "index"), tmp_path)
        assert not is_change("created", str(git / "objects" / "ab" / "cdef"), tmp_path)
        assert not is_change("created", str(git / "refs" / "heads" / "main.lock"), tmp_path)

    def test_a_written_file_nudges(self, tmp_path: Path) -> None:
        """Writing a file below a watched folder nudges with the folder's reason."""
        wakeup = Wakeup()
        watch = FileWatch(wakeup, [(tmp_path, "repo")])
        watch.start()
        try:
            (tmp_path / "fleet.yaml").write_text("variables: {}\n")
            wait_for(wakeup.pending, timeout=10, what="a file event")
            assert wakeup.wait(0) == frozenset({"repo"})
        finally:
            watch.stop()


class _Events:
    """A fake event source: fails once, then yields one event and blocks until stopped."""

    def __init__(self) -> None:
        self.calls = 0

    def events(self, device: str, stop: threading.Event) -> Iterator[ContainerEvent]:
        self.calls += 1
        if self.calls == 1:
            raise EngineError("docker: subscribing to events failed: connection refused")
        return self._stream(device, stop)

    def _stream(self, device: str, stop: threading.Event) -> Iterator[ContainerEvent]:
        yield ContainerEvent("die", "c1", f"{device}_app_web", "app", "web", 0.0)
        stop.wait()


class TestEngineEvents:
    """Docker events nudge the agent; a lost stream reconnects and nudges again."""

    def test_reconnects_then_nudges_for_connection_and_event(self) -> None:
        """After a failed subscription it retries, nudges on connect and on each event."""
        wakeup = Wakeup()
        source = _Events()
        watch = EngineEventWatch(source, "dev", wakeup, max_backoff=0.1)
        watch.start()
        try:
            seen: set[str] = set()

            def collected() -> bool:
                seen.update(wakeup.wait(0.05))
                return {"docker:connected", "docker:die"} <= seen

            wait_for(collected, timeout=15, what="connect and die nudges")
            assert watch.connected.is_set()
            assert source.calls == 2
        finally:
            watch.stop()
        assert not watch.connected.is_set()


class TestSignals:
    """SIGHUP nudges; SIGTERM asks the loop to stop."""

    def test_hup_and_term_reach_their_callbacks(self) -> None:
        """Signals call back on a thread of their own, never inside the interrupted code."""
        hup, term = threading.Event(), threading.Event()
        names: list[str] = []
        old = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
        try:
            install_signal_handlers(hup.set, lambda name: (names.append(name), term.set()))
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for(lambda: hup.is_set() and term.is_set(), timeout=10, what="both callbacks")
            assert names == ["SIGTERM"]
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
