"""What wakes the agent: the timer, file events, Docker events, nudges, signals.

The only module that imports ``watchdog``. Every trigger ends in :meth:`Wakeup.nudge`
with a short reason; the agent loop waits on :meth:`Wakeup.wait`, which returns the
set of reasons that arrived (empty: the timer ran out). Triggers that fire while a pass
runs are kept and start the next pass at once, so nothing is lost and passes never
overlap.

- **timer**: :func:`jittered` spreads a fleet's polls (±10%) so devices do not hit the
  Git server in lock step; :func:`backoff` grows the wait after source / engine errors
  (exponential with full jitter, capped).
- **file events**: :class:`FileWatch` watches a local repository path (its files and
  ``.git`` refs, not the index git rewrites on every read) and the ``watch`` folders.
  Only changes count (created, deleted, modified, moved), never opens or reads, so
  the agent reading its own repository does not wake itself.
- **Docker events**: :class:`EngineEventWatch` follows die / destroy / stop events of
  the device's managed containers and reconnects with backoff; every (re)connection
  also nudges, because events may have been missed while it was down.
- **nudge**: ``POST /reconcile`` on the status port and SIGHUP call :meth:`Wakeup.nudge`.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from reconciler.errors import FleetgateError

if TYPE_CHECKING:
    from reconciler.engine.docker import ContainerEvent

JITTER = 0.10
"""Fraction of the poll interval the timer varies by (±)."""

_CHANGES = frozenset(("created", "deleted", "modified", "moved"))
_GIT_SIGNALS = ("HEAD", "packed-refs", "FETCH_HEAD")


def jittered(interval: float, rand: float, fraction: float = JITTER) -> float:
    """``interval`` moved by up to ±``fraction`` of it; ``rand`` is uniform in [0, 1)."""
    return interval * (1.0 + fraction * (2.0 * rand - 1.0))


def backoff(failures: int, base: float, cap: float, rand: float) -> float:
    """The wait after ``failures`` consecutive failures (0: none, so ``base``).

    Exponential (``base * 2**(failures-1)``, capped at ``cap``) with "equal jitter": a
    random point in the upper half, so retries of many devices spread out but never
    come back faster than half the step.
    """
    if failures <= 0:
        return base
    step = min(cap, base * 2.0 ** min(failures - 1, 32))
    return step / 2.0 + step / 2.0 * rand


class Wakeup:
    """A thread-safe set of pending trigger reasons the agent loop waits on."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._reasons: set[str] = set()

    def nudge(self, reason: str) -> None:
        """Ask for a pass as soon as the current one (if any) is done."""
        with self._cond:
            self._reasons.add(reason)
            self._cond.notify_all()

    def wait(self, timeout: float) -> frozenset[str]:
        """Wait up to ``timeout`` seconds for a nudge; return and clear the reasons."""
        with self._cond:
            if not self._reasons and timeout > 0:
                self._cond.wait(timeout)
            reasons = frozenset(self._reasons)
            self._reasons.clear()
            return reasons

    def pending(self) -> bool:
        with self._cond:
            return bool(self._reasons)


def install_signal_handlers(on_hup: Callable[[], None], on_term: Callable[[str], None]) -> None:
    """SIGHUP → ``on_hup()``; SIGTERM / SIGINT → ``on_term(name)``.

    The handlers run the callbacks on a fresh thread: a signal handler interrupts the
    main thread anywhere, possibly while it holds the very lock the callback needs.
    Call from the main thread.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        target: Callable[[], None] = on_hup if signum == signal.SIGHUP else lambda: on_term(name)
        threading.Thread(target=target, name=f"signal-{name}", daemon=True).start()

    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


# ------------------------------------------------------------------------ files


def is_change(event_type: str, path: str, root: Path) -> bool:
    """Whether a file event under ``root`` may change the desired state.

    Inside ``.git`` only ref updates count (a commit, a checkout, a fetch), not the
    index or objects git rewrites while the agent merely reads the repository.
    """
    if event_type not in _CHANGES:
        return False
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return True
    if not parts or parts[0] != ".git":
        return True
    inner = parts[1:]
    if not inner:
        return False
    if inner[0] == "refs":
        return not inner[-1].endswith(".lock")
    return len(inner) == 1 and inner[0] in _GIT_SIGNALS


def _handler(root: Path, reason: str, wakeup: Wakeup) -> Any:
    """A watchdog handler nudging ``wakeup`` on a change below ``root``.

    watchdog is imported here, when a folder is actually watched: an agent that reads a
    URL and watches no folder never loads it (issue 13: the idle footprint).
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: PLC0415

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            paths = [event.src_path, getattr(event, "dest_path", "") or ""]
            for raw in paths:
                path = raw.decode() if isinstance(raw, bytes) else str(raw)
                if path and is_change(event.event_type, path, root):
                    wakeup.nudge(reason)
                    return

    return Handler()


class FileWatch:
    """watchdog observers nudging ``wakeup`` on changes below each folder (recursive)."""

    def __init__(self, wakeup: Wakeup, folders: Iterable[tuple[Path, str]]) -> None:
        self._observer: Any = None
        self._log = structlog.get_logger()
        self._count = 0
        for folder, reason in folders:
            if not folder.is_dir():
                self._log.warning("watch.missing", path=str(folder), reason=reason)
                continue
            if self._observer is None:
                from watchdog.observers import Observer  # noqa: PLC0415  # lazy: see _handler

                self._observer = Observer()
            root = folder.resolve()
            self._observer.schedule(_handler(root, reason, wakeup), str(root), recursive=True)
            self._count += 1

    def start(self) -> None:
        if self._count:
            self._observer.start()

    def stop(self) -> None:
        if self._count and self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)


# ---------------------------------------------------------------- docker events


class ContainerEvents(Protocol):
    """The optional runtime capability :class:`EngineEventWatch` needs."""

    def events(self, device: str, stop: threading.Event) -> Iterator[ContainerEvent]: ...


class EngineEventWatch:
    """A thread following the device's container events; each one nudges ``wakeup``.

    ``connected`` is set while the stream runs: while it is clear, the agent cannot
    trust the absence of events and observes the engine on every pass.
    """

    def __init__(
        self,
        source: ContainerEvents,
        device: str,
        wakeup: Wakeup,
        *,
        max_backoff: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.device = device
        self.wakeup = wakeup
        self.max_backoff = max_backoff
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._rng = rng or random.Random()
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._log = structlog.get_logger().bind(device=device)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                for event in self._follow():
                    failures = 0
                    self._log.info(
                        "trigger.docker_event",
                        action=event.action,
                        container=event.name,
                        stack=event.stack,
                        service=event.service,
                    )
                    self.wakeup.nudge(f"docker:{event.action}")
            except FleetgateError as e:
                failures += 1
                self._log.warning("trigger.docker_events_lost", error=str(e), failures=failures)
            finally:
                self.connected.clear()
            if self._stop.wait(backoff(failures, 1.0, self.max_backoff, self._rng.random())):
                return

    def _follow(self) -> Iterator[ContainerEvent]:
        stream = self.source.events(self.device, self._stop)
        self.connected.set()
        # Events may have been missed while disconnected: look once.
        self.wakeup.nudge("docker:connected")
        yield from stream
