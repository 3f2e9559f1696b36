"""Hypothesis strategies of desired states and engines shared by the plan property tests."""

from __future__ import annotations

import hashlib
from typing import get_args

from fakes import DEVICE, FakeContainer, FakeRuntime, container_of, desired, service, stack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from reconciler.model import (
    ConfigFile,
    ContainerState,
    Dependency,
    DesiredState,
    NetworkAttachment,
    NetworkSpec,
    VolumeSpec,
)

STACKS = ("a", "b", "c")


SERVICES = ("web", "db", "job")


IMAGES = ("img/x:1", "img/x:2", "img/y:1")


ENVS: tuple[dict[str, str], ...] = ({}, {"K": "1"}, {"K": "2"})


ALL_STATES: tuple[ContainerState, ...] = get_args(ContainerState)


CONFIG_REPO_PATH = "stacks/{stack}/app.conf"


def config_content(stack_name: str) -> bytes:
    return f"setting={stack_name}\n".encode()


@st.composite
def desired_states(draw: st.DrawFn, root: str = "/state") -> DesiredState:
    stacks = []
    for stack_name in draw(st.lists(st.sampled_from(STACKS), unique=True, max_size=3)):
        names = draw(st.lists(st.sampled_from(SERVICES), unique=True, min_size=1))
        with_net = draw(st.booleans())
        specs = []
        restarts: dict[str, str] = {}
        for i, name in enumerate(names):
            restart = draw(st.sampled_from(["no", "always", "unless-stopped"]))
            deps = []
            for earlier in draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else ():
                cond = (
                    draw(st.sampled_from(["service_started", "service_completed_successfully"]))
                    if restarts[earlier] == "no"
                    else draw(st.sampled_from(["service_started", "service_healthy"]))
                )
                deps.append(Dependency(earlier, cond))
            restarts[name] = restart
            specs.append(
                service(
                    stack_name,
                    name,
                    draw(st.sampled_from(IMAGES)),
                    environment=draw(st.sampled_from(ENVS)),
                    restart=restart,
                    depends_on=tuple(deps),
                    healthcheck=draw(st.booleans()),
                    pull_policy=draw(st.sampled_from(["missing", "always", "never"])),
                    networks=(NetworkAttachment(f"{stack_name}-net"),) if with_net else (),
                )
            )
        data = config_content(stack_name)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        stacks.append(
            stack(
                stack_name,
                *specs,
                networks=(NetworkSpec(f"{stack_name}-net"),) if with_net else (),
                volumes=(VolumeSpec(f"{stack_name}-vol"),) if draw(st.booleans()) else (),
                data_dirs=(f"{root}/data/{DEVICE}/{stack_name}",),
                lock_dir=f"{root}/locks/{stack_name}",
                config_files=(
                    ConfigFile(
                        CONFIG_REPO_PATH.format(stack=stack_name),
                        f"{root}/configs/{digest[7:19]}/app.conf",
                        digest,
                    ),
                ),
            )
        )
    return desired(*stacks)


@st.composite
def engines(draw: st.DrawFn, states: tuple[ContainerState, ...] = ALL_STATES) -> FakeRuntime:
    """A fake engine holding managed leftovers, duplicates, foreign objects and images."""
    rt = FakeRuntime()
    for ref in draw(st.lists(st.sampled_from(IMAGES), unique=True)):
        rt.add_image(ref)
    for name in draw(st.lists(st.sampled_from([*STACKS, "gone"]), unique=True)):
        rt.add_network(f"{name}-net", DEVICE, name)
    for name in draw(st.lists(st.sampled_from([*STACKS, "x"]), unique=True, max_size=2)):
        if f"{name}-net" not in rt.networks:
            rt.add_network(f"{name}-net", "", "")
    all_names = [f"{s}-{v}" for s in (*STACKS, "gone") for v in (*SERVICES, "old")]
    for i in range(draw(st.integers(0, 8))):
        stack_name = draw(st.sampled_from([*STACKS, "gone"]))
        svc = draw(st.sampled_from([*SERVICES, "old"]))
        spec = service(
            stack_name,
            svc,
            draw(st.sampled_from(IMAGES)),
            environment=draw(st.sampled_from(ENVS)),
            restart=draw(st.sampled_from(["no", "always", "unless-stopped"])),
            healthcheck=draw(st.booleans()),
            networks=(NetworkAttachment(f"{stack_name}-net"),) if draw(st.booleans()) else (),
        )
        name = draw(st.sampled_from([spec.container_name, f"leftover-{i}"]))
        state = draw(st.sampled_from(states))
        code = draw(st.sampled_from([0, 1, 137])) if state in ("exited", "dead") else None
        if rt.by_name(name) is None:
            rt.add_container(container_of(spec, f"m{i}", state, name=name, exit_code=code))
    for i, name in enumerate(draw(st.lists(st.sampled_from(all_names), unique=True, max_size=3))):
        if rt.by_name(name) is None:
            rt.add_container(
                FakeContainer(id=f"f{i}", name=name, device=draw(st.sampled_from(["", "dev2"])))
            )
    return rt


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
