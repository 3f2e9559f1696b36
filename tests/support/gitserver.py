"""Real Git servers on 127.0.0.1 for source tests: ``git daemon`` and smart HTTP.

- :class:`Origin`: a repository on disk that a test commits to (plain ``git``).
- :class:`GitDaemon`: ``git daemon --export-all --base-path`` on a free port (``git://``).
- :class:`SmartHttpServer`: ``git http-backend`` (CGI) behind a threaded ``wsgiref``
  server, optionally behind HTTP basic auth (``http://``).
- :class:`SilentServer`: accepts TCP connections and never answers (timeouts).

Each server is a context manager. Starting one that cannot start (git missing, the
daemon exits, the port never answers) raises ``RuntimeError``: tests that need a
server FAIL loudly, they never skip.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from support.wait import wait_for

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fleet Tester",
    "GIT_AUTHOR_EMAIL": "tester@plant.example",
    "GIT_COMMITTER_NAME": "Fleet Tester",
    "GIT_COMMITTER_EMAIL": "tester@plant.example",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def _git_binary() -> str:
    found = shutil.which("git")
    if found is None:
        raise RuntimeError("git is not installed (Debian: apt-get install git)")
    return found


def git(*args: str, cwd: Path) -> str:
    """Run a git command for test set-up; raise with its stderr on failure."""
    result = subprocess.run(
        [_git_binary(), *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


class Origin:
    """A non-bare repository (branch ``main``) that servers publish and tests commit to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--initial-branch=main", str(path), cwd=path.parent)
        git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=path)
        git("config", "http.receivepack", "false", cwd=path)

    @property
    def name(self) -> str:
        return self.path.name

    def commit(self, files: Mapping[str, str], message: str = "change") -> str:
        """Write ``files`` (relative path -> text), commit them, return the full SHA."""
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path)

    def branch(self, name: str, at: str = "HEAD") -> None:
        git("branch", "--force", name, at, cwd=self.path)

    def tag(self, name: str, annotated: bool = True) -> None:
        if annotated:
            git("tag", "--annotate", "-m", name, name, cwd=self.path)
        else:
            git("tag", name, cwd=self.path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class _Server:
    """Context-manager plumbing shared by the servers."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class GitDaemon(_Server):
    """``git daemon`` serving every repository under ``base`` as ``git://127.0.0.1:<port>/<name>``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = base.parent / f"git-daemon-{id(self)}.log"

    def start(self) -> None:
        binary = _git_binary()
        for _ in range(5):
            self.port = free_port()
            with self._log.open("wb") as log:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        "daemon",
                        "--reuseaddr",
                        "--export-all",
                        "--informative-errors",
                        f"--base-path={self.base}",
                        "--listen=127.0.0.1",
                        f"--port={self.port}",
                        str(self.base),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env={**os.environ, **GIT_ENV},
                )
            started = wait_for(
                self._started, timeout=15, what=f"git daemon on 127.0.0.1:{self.port}"
            )
            if started == "up":
                return
        raise RuntimeError(f"git daemon did not start: {self._log.read_text(errors='replace')}")

    def _started(self) -> str:
        """``up`` once the port answers, ``exited`` if the daemon died, else ``""``."""
        if _answers(self.port):
            return "up"
        return "exited" if self._proc is None or self._proc.poll() is not None else ""

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # stdlib's signature
        pass


class SmartHttpServer(_Server):
    """``git http-backend`` behind HTTP on 127.0.0.1, optionally requiring basic auth.

    ``requests`` records every ``(method, path, authorized user)`` so a test can see
    that credentials reached the server.
    """

    def __init__(
        self, base: Path, username: str | None = None, password: str | None = None
    ) -> None:
        self.base = base
        self.username = username
        self.password = password
        self.port = 0
        self.requests: list[tuple[str, str, str]] = []
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        backend = (
            subprocess.run(
                [_git_binary(), "--exec-path"], capture_output=True, text=True, check=True
            ).stdout.strip()
            + "/git-http-backend"
        )
        if not Path(backend).is_file():
            raise RuntimeError(f"git-http-backend not found at {backend}")
        self._backend = backend

    def start(self) -> None:
        server = make_server(
            "127.0.0.1",
            0,
            self._app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        wait_for(lambda: _answers(self.port), timeout=15, what=f"smart HTTP on :{self.port}")

    def url(self, name: str, credentials: str | None = None) -> str:
        userinfo = f"{credentials}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def _authorized(self, environ: Mapping[str, Any]) -> str | None:
        """The user name when the request may pass ("" when no auth is configured)."""
        if self.username is None:
            return ""
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if (user, password) == (self.username, self.password) else None

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        user = self._authorized(environ)
        self.requests.append(
            (str(environ["REQUEST_METHOD"]), str(environ.get("PATH_INFO", "")), user or "")
        )
        if user is None:
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="fleet"'), ("Content-Type", "text/plain")],
            )
            return [b"authentication required\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        cgi_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REQUEST_METHOD": str(environ["REQUEST_METHOD"]),
            "PATH_INFO": str(environ.get("PATH_INFO", "")),
            "QUERY_STRING": str(environ.get("QUERY_STRING", "")),
            "CONTENT_TYPE": str(environ.get("CONTENT_TYPE", "")),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": user,
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for key, value in environ.items():
            if key.startswith("HTTP_") and key != "HTTP_AUTHORIZATION":
                cgi_env[key] = str(value)
        out = subprocess.run(
            [self._backend], input=body, env=cgi_env, capture_output=True, check=False, timeout=60
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        start_response(status, headers)
        return [payload]


class SilentServer(_Server):
    """A TCP port that accepts connections and never says a word (a hung server)."""

    def __init__(self) -> None:
        self.port = 0
        self._sock: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for conn in self._held:
            conn.close()
        if self._sock is not None:
            self._sock.close()
