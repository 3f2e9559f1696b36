"""The Git side of a fleet (used by ``bench/fleet.py``): agents' "did the ref move?" polls.

An agent asks the Git server for the tracked ref with ``git ls-remote`` every poll
(``reconciler.source.fetch.remote_head``, called by ``reconciler/agent/source.py``) and
fetches only when it moved. Measured here against ``git daemon`` and smart HTTP
(``git http-backend`` behind the tests' WSGI front, in a process of its own) on
127.0.0.1, serving the bench's fleet repository committed once:

- ``--polls`` ``remote_head`` calls (8 at a time, as agents polling at once would) and,
  as the baseline, ``git fetch`` of an up-to-date mirror per poll (what an agent without
  the ls-remote check would run) and a fresh clone per poll (an agent without a cache);
- the server's CPU (user + system of the server process and its reaped children, from
  ``/proc/<pid>/stat``) per poll, and what one core sustains: ``1 / CPU per poll``.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.gitserver import GIT_ENV, GitDaemon, git  # noqa: E402  # tests/ on the path

from reconciler.source.fetch import remote_head  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 8


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU s of ``pid`` and its live descendants, of which their reaped children's):
    utime + stime + cutime + cstime over the tree (``git daemon`` is a wrapper process
    whose child ``git-daemon`` reaps one process per connection)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, total, reaped = [pid], 0.0, 0.0
    while tree:
        current = tree.pop()
        try:
            fields = [int(f) for f in _stat(current)[11:15]]
        except (OSError, ValueError):
            continue
        total += sum(fields) / TICKS
        reaped += (fields[2] + fields[3]) / TICKS
        tree.extend(child for child, parent in parents.items() if parent == current)
    return total, reaped


def commit_repo(repo: Path, base: Path) -> Path:
    """The fleet folder as a bare repository ``base/fleet.git`` with one commit."""
    work = base / "work"
    shutil.copytree(repo, work)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "fleet", cwd=work)
    bare = base / "fleet.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=base)
    return bare


def smart_http(base: Path) -> tuple[subprocess.Popen[str], str]:
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from support.gitserver import SmartHttpServer;"
        "s = SmartHttpServer(Path(sys.argv[2])); s.start(); print(s.port, flush=True);"
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(ROOT / "tests"), str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/fleet.git"


def measure(pid: int, polls: int, poll: Callable[[int], object]) -> tuple[float, float, float]:
    """(server CPU s per poll, of which in reaped children, client wall s per poll with
    CONCURRENCY polls at once)."""
    before, started = cpu_seconds(pid), time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(poll, range(polls)))
    wall = time.monotonic() - started
    time.sleep(0.2)  # unreaped children still count: zombies keep their times in /proc
    after = cpu_seconds(pid)
    return (after[0] - before[0]) / polls, (after[1] - before[1]) / polls, wall / polls


def fetch_poll(mirrors: Path, url: str) -> Callable[[int], object]:
    """``git fetch`` into an up-to-date mirror per poll (each mirror used by one poll at
    a time)."""
    free: queue.Queue[Path] = queue.Queue()

    def poll(_n: int) -> object:
        mirror = free.get()
        try:
            return subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(mirror),
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    url,
                    "+refs/heads/*:refs/heads/*",
                ],
                check=True,
                env={**os.environ, **GIT_ENV},
            )
        finally:
            free.put(mirror)

    for n in range(CONCURRENCY):
        git("init", "--quiet", "--bare", str(mirrors / f"m{n}"), cwd=mirrors)
        free.put(mirrors / f"m{n}")
    poll(0)  # the first fetch brings the objects; every measured one finds nothing new
    for _ in range(CONCURRENCY - 1):
        poll(0)
    return poll


def clone_poll(folder: Path, url: str) -> Callable[[int], object]:
    def poll(n: int) -> object:
        target = folder / f"c{n}"
        done = subprocess.run(
            ["git", "clone", "--quiet", "--bare", url, str(target)],
            check=True,
            env={**os.environ, **GIT_ENV},
        )
        shutil.rmtree(target)
        return done

    return poll


def report(name: str, server: str, measured: tuple[float, float, float]) -> None:
    cpu, reaped, wall = measured
    rate = f"{1 / cpu:,.0f}" if cpu > 0 else "n/a"
    print(
        f"  {server:<10} {name:<28} server CPU {cpu * 1000:6.2f} ms/poll "
        f"(git processes {reaped * 1000:6.2f}), {rate:>6} polls/s per core; "
        f"client wall {wall * 1000:6.1f} ms/poll"
    )


def git_bench(repo: Path, polls: int, clones: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-git-") as tmp:
        base = Path(tmp) / "srv"
        base.mkdir()
        commit_repo(repo, base)
        daemon = GitDaemon(base)
        daemon.start()
        http, http_url = smart_http(base)
        try:
            assert daemon._proc is not None
            servers = (
                ("git daemon", daemon._proc.pid, daemon.url("fleet.git")),
                ("smart HTTP", http.pid, http_url),
            )
            print(f"git: {polls} polls ({CONCURRENCY} at once) of a 1-commit fleet repository")
            for server, pid, url in servers:
                report(
                    "ls-remote (fleetgate)",
                    server,
                    measure(pid, polls, lambda _n, u=url: remote_head(u)),
                )
                mirrors = Path(tmp) / f"mirrors-{pid}"
                mirrors.mkdir()
                report(
                    "fetch, up to date (baseline)",
                    server,
                    measure(pid, polls, fetch_poll(mirrors, url)),
                )
                clones_dir = Path(tmp) / f"clones-{pid}"
                clones_dir.mkdir()
                report(
                    f"fresh clone ({clones} polls)",
                    server,
                    measure(pid, clones, clone_poll(clones_dir, url)),
                )
        finally:
            daemon.stop()
            if http.stdin is not None:
                http.stdin.close()
            http.wait(10)
