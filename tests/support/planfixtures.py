"""The plan fixture cases (desired state + runtime) shared by plan and parity tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakes import DEVICE, FakeContainer, FakeRuntime, container_of, desired, service, stack

from reconciler.model import Dependency, DesiredState, NetworkAttachment, NetworkSpec, VolumeSpec

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "plan").glob("*.yaml"))


def service_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    kw = dict(raw)
    kw["depends_on"] = tuple(
        Dependency(name, condition) for name, condition in (kw.pop("depends_on", {}) or {}).items()
    )
    kw["networks"] = tuple(NetworkAttachment(n) for n in kw.pop("networks", ()))
    return kw


def fixture_state(raw: dict[str, Any]) -> DesiredState:
    stacks = []
    for name, body in (raw or {}).items():
        services = tuple(
            service(name, svc, **service_kwargs(spec or {}))
            for svc, spec in (body.get("services") or {}).items()
        )
        stacks.append(
            stack(
                name,
                *services,
                networks=tuple(NetworkSpec(n) for n in body.get("networks", ())),
                volumes=tuple(VolumeSpec(v) for v in body.get("volumes", ())),
                data_dirs=tuple(body.get("data_dirs", ())),
                update_strategy=body.get("update_strategy", "download-then-kill"),
            )
        )
    return desired(*stacks)


def fixture_runtime(raw: dict[str, Any]) -> FakeRuntime:
    rt = FakeRuntime()
    for ref in raw.get("images", ()):
        rt.add_image(ref)
    for name, owner in (raw.get("networks") or {}).items():
        rt.add_network(name, DEVICE, owner)
    for i, name in enumerate(raw.get("foreign", ())):
        rt.add_container(FakeContainer(id=f"foreign{i}", name=name))
    for item in raw.get("containers", ()):
        c = dict(item)
        cid, state = c.pop("id"), c.pop("state", "running")
        extra = {k: c.pop(k) for k in ("name", "exit_code", "health", "restart_count") if k in c}
        spec = service(c.pop("stack"), c.pop("service"), **service_kwargs(c))
        rt.add_container(container_of(spec, cid, state, **extra))
    return rt
