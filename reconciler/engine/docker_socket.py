"""A Docker runtime that observes over the engine's Unix socket and loads the SDK only to act.

A no-change ``fleetgate apply`` only observes: four list calls (and an inspect for the
few containers the list cannot describe). Importing the docker SDK (with requests and
urllib3) cost more than those calls, so :class:`SocketEngine` reads them with
``http.client`` over the Unix socket and builds the snapshot with the same translation
as the SDK reader (:mod:`reconciler.engine.docker_listing`). Everything else (pulls,
creates, starts, removals, events) goes to a :class:`~reconciler.engine.docker.DockerEngine`
made on first use, which also observes whenever the socket reader cannot: an engine
behind ``tcp://`` or ``ssh://``, an engine that does not answer or answers an error
(then the SDK's one-line :class:`~reconciler.errors.EngineError` is what the user sees).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from reconciler.engine.docker_listing import assemble, observed_container
from reconciler.engine.port import ProgressCallback, Runtime
from reconciler.model import (
    LABEL_DEVICE,
    LABEL_MANAGED,
    NetworkSpec,
    ObservedContainer,
    ObservedState,
    ServiceSpec,
    VolumeSpec,
)

if TYPE_CHECKING:
    from reconciler.engine.docker import DockerEngine

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class _Unreadable(Exception):
    """Internal: the socket reader cannot answer; the SDK takes over."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_path(docker_host: str | None) -> str | None:
    """The Unix socket of ``docker_host`` (default ``DOCKER_HOST``, then the standard one)."""
    url = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    return url[len("unix://") :] if url.startswith("unix://") else None


class SocketEngine:
    """:class:`~reconciler.engine.port.Runtime` on the Docker engine at ``docker_host``:
    observed over its Unix socket, acted on through the docker SDK (see the module)."""

    def __init__(self, docker_host: str | None = None, timeout: float = 60.0) -> None:
        self._docker_host = docker_host
        self._timeout = timeout
        self._path = socket_path(docker_host)
        self._sdk: DockerEngine | None = None

    @property
    def sdk(self) -> DockerEngine:
        """The SDK engine (imports the docker SDK on first use)."""
        if self._sdk is None:
            from reconciler.engine.docker import DockerEngine  # noqa: PLC0415  # see the module

            self._sdk = DockerEngine(self._docker_host, self._timeout)
        return self._sdk

    def _get(self, conn: http.client.HTTPConnection, path: str, *, missing: bool = False) -> Any:
        """The JSON answer to ``GET path``; ``None`` for a 404 when ``missing`` is fine."""
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise _Unreadable(str(e)) from e
        if response.status == 404 and missing:
            return None
        if response.status != 200:
            raise _Unreadable(f"{path}: HTTP {response.status}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise _Unreadable(f"{path}: {e}") from e

    def observe(self, device: str, *, brief: bool = False) -> ObservedState:
        """The snapshot of :meth:`DockerEngine.observe`, read over the socket when possible."""
        if self._path is None:
            return self.sdk.observe(device, brief=brief)
        conn = _UnixConnection(self._path, self._timeout)
        label = json.dumps({"label": [f"{LABEL_MANAGED}=true", f"{LABEL_DEVICE}={device}"]})
        try:
            listings = (
                self._get(conn, "/containers/json?all=1"),
                self._get(conn, "/networks"),
                self._get(conn, f"/volumes?filters={quote(label)}"),
                self._get(conn, "/images/json"),
            )

            def inspect(container_id: str) -> ObservedContainer | None:
                info = self._get(conn, f"/containers/{quote(container_id)}/json", missing=True)
                return None if info is None else observed_container(info)  # None: vanished

            return assemble(device, listings, inspect, brief=brief)
        except (_Unreadable, KeyError, TypeError, AttributeError):
            return self.sdk.observe(device, brief=brief)
        finally:
            conn.close()

    # Acting: the SDK engine, made on first use.

    def inspect_container(self, container_id: str) -> ObservedContainer | None:
        return self.sdk.inspect_container(container_id)

    def pull(self, image: str, platform: str | None, progress: ProgressCallback | None) -> None:
        self.sdk.pull(image, platform, progress)

    def load_images(self, archive: Path, platform: str) -> None:
        self.sdk.load_images(archive, platform)

    def create_network(self, device: str, stack: str, spec: NetworkSpec) -> None:
        self.sdk.create_network(device, stack, spec)

    def remove_network(self, name: str) -> None:
        self.sdk.remove_network(name)

    def create_volume(self, device: str, stack: str, spec: VolumeSpec) -> None:
        self.sdk.create_volume(device, stack, spec)

    def create_container(self, spec: ServiceSpec, revision: str, name: str | None = None) -> str:
        return self.sdk.create_container(spec, revision, name)

    def rename_container(self, container: str, new_name: str) -> None:
        self.sdk.rename_container(container, new_name)

    def start_container(self, container_id: str) -> None:
        self.sdk.start_container(container_id)

    def stop_container(self, container_id: str, timeout: float | None) -> None:
        self.sdk.stop_container(container_id, timeout)

    def remove_container(self, container_id: str) -> None:
        self.sdk.remove_container(container_id)

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()


if TYPE_CHECKING:  # mypy proves the adapter satisfies the port
    _runtime: Runtime = SocketEngine()
