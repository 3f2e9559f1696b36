"""Planner behaviour not covered by the fixture files: step values, reasons, edge states."""

from __future__ import annotations

import json

from fakes import DEVICE, FakeContainer, FakeRuntime, container_of, desired, service, stack

from reconciler.model import (
    ConfigFile,
    Dependency,
    NetworkAttachment,
    NetworkSpec,
    ObservedImage,
    StackSpec,
)
from reconciler.plan.planner import (
    CreateContainer,
    EnsureDirectory,
    MaterializeConfig,
    Plan,
    WaitHealthy,
    changed_fields,
    image_present,
    plan,
)

IMG = "fleetgate-test/busybox:1"


def _engine(*containers: FakeContainer) -> FakeRuntime:
    rt = FakeRuntime()
    rt.add_image(IMG)
    for c in containers:
        rt.add_container(c)
    return rt


class TestSteps:
    def test_create_step_json_never_carries_environment_values(self) -> None:
        """A create step's JSON names the service and image but never an environment value."""
        spec = service("s", "x", environment={"PASSWORD": "s3cret"})
        step = CreateContainer(spec, "a" * 40, "container missing")
        text = json.dumps(step.to_json())
        assert "s3cret" not in text and "PASSWORD" not in text
        assert step.to_json()["image"] == IMG

    def test_plan_json_lists_steps_blocked_and_notes(self) -> None:
        """The plan's JSON holds every step as JSON plus blocked reasons and notes."""
        rt = _engine(FakeContainer(id="f", name="s-a"))
        p = plan(desired(stack("s", service("s", "a"), service("s", "b"))), rt.observe(DEVICE))
        doc = json.loads(json.dumps(p.to_json()))
        assert [s["kind"] for s in doc["steps"]] == ["create", "start"]
        assert doc["blocked"] == [
            "s/a: container name s-a is held by a container fleetgate does not manage"
        ]
        assert doc["device"] == DEVICE and doc["revision"] == "a" * 40

    def test_empty_plan_is_empty(self) -> None:
        """A plan without steps reports is_empty, whatever its notes say."""
        assert Plan(steps=(), notes=("x: up to date",)).is_empty
        assert not Plan(steps=(EnsureDirectory("/d", "data", "r"),)).is_empty


class TestReasons:
    def test_changed_fields_are_named_sorted(self) -> None:
        """The fields whose hashes differ or exist on one side only are named, sorted."""
        old = (("image", "1"), ("environment", "2"), ("ports", "3"))
        new = (("image", "9"), ("environment", "2"), ("user", "4"))
        assert changed_fields(old, new) == ["image", "ports", "user"]

    def test_container_name_change_recreates(self) -> None:
        """A container holding another name than the desired one is replaced, saying why."""
        spec = service("s", "x")
        rt = _engine(container_of(spec, "c1", name="legacy-x"))
        p = plan(desired(stack("s", spec)), rt.observe(DEVICE))
        assert p.describe() == (
            "stop s/x (legacy-x): container name changed from legacy-x",
            "remove s/x (legacy-x): container name changed from legacy-x",
            "create s/x: container name changed from legacy-x",
            "start s/x: container name changed from legacy-x",
        )

    def test_created_but_never_started_is_started(self) -> None:
        """A container left created by a crash before start is started, not recreated."""
        spec = service("s", "x")
        rt = _engine(container_of(spec, "c1", state="created"))
        p = plan(desired(stack("s", spec)), rt.observe(DEVICE))
        assert p.describe() == ("start s/x: container created but not started",)


class TestImages:
    def test_short_and_library_references_match(self) -> None:
        """busybox, busybox:latest and docker.io/library/busybox:latest are one image."""
        local = (ObservedImage("sha256:1", ("busybox:latest",), ("busybox@sha256:ab",)),)
        assert image_present("busybox", local)
        assert image_present("docker.io/library/busybox:latest", local)
        assert image_present("busybox@sha256:ab", local)
        assert not image_present("busybox:1.36", local)
        assert not image_present("registry:5000/busybox", local)

    def test_pull_policy_always_pulls_only_when_creating(self) -> None:
        """pull_policy always pulls for a (re)created container but not for a running one."""
        spec = service("s", "x", pull_policy="always")
        running = plan(desired(stack("s", spec)), _engine(container_of(spec, "c1")).observe(DEVICE))
        assert running.is_empty
        fresh = plan(desired(stack("s", spec)), _engine().observe(DEVICE))
        assert fresh.describe()[0] == f"pull {IMG}: pull_policy always for s/x"

    def test_never_policy_uses_an_image_another_service_pulls(self) -> None:
        """A pull_policy never service may use an image this same plan pulls for another."""
        a = service("a", "x", "img/new:1")
        b = service("b", "x", "img/new:1", pull_policy="never")
        p = plan(desired(stack("a", a), stack("b", b)), _engine().observe(DEVICE))
        assert p.blocked == ()
        assert p.describe()[0] == "pull img/new:1: not present for a/x"


class TestPaths:
    def _stack(self) -> StackSpec:
        cfg = ConfigFile("stacks/s/a.conf", "/st/configs/abc/a.conf", "sha256:abc")
        return stack("s", service("s", "x"), data_dirs=("/st/data/s",), lock_dir="/st/lock/s",
                     config_files=(cfg,))  # fmt: skip

    def test_converged_device_without_path_observation_has_no_path_steps(self) -> None:
        """When paths are not observed, a stack with nothing to start gets no path steps."""
        st = self._stack()
        spec = st.services[0]
        p = plan(desired(st), _engine(container_of(spec, "c1")).observe(DEVICE))
        assert p.is_empty

    def test_observed_missing_paths_are_repaired(self) -> None:
        """With paths observed, only the missing ones are ensured, even with nothing to start."""
        st = self._stack()
        spec = st.services[0]
        observed = _engine(container_of(spec, "c1")).observe(DEVICE)
        present = frozenset({"/st/data/s", "/st/configs/abc"})
        p = plan(desired(st), observed, existing_paths=present)
        assert [type(s) for s in p.steps] == [EnsureDirectory, MaterializeConfig]
        assert p.describe()[0] == "mkdir lock /st/lock/s: stack s"


class TestDependencies:
    def test_healthy_untouched_dependency_needs_no_wait(self) -> None:
        """A dependent recreated next to an already healthy dependency starts without waiting."""
        db = service("s", "db", healthcheck=True)
        web = service("s", "web", depends_on=(Dependency("db", "service_healthy"),))
        old_web = service("s", "web", "img/old:1", depends_on=web.depends_on)
        rt = _engine(container_of(db, "c1"), container_of(old_web, "c2"))
        p = plan(desired(stack("s", db, web)), rt.observe(DEVICE))
        assert not any(isinstance(s, WaitHealthy) for s in p.steps)
        assert p.notes == ("s/db: up to date",)

    def test_dependency_order_wins_over_listing_order(self) -> None:
        """Services are handled dependencies first even when listed the other way round."""
        web = service("s", "web", depends_on=(Dependency("db"),))
        db = service("s", "db")
        p = plan(desired(stack("s", web, db)), _engine().observe(DEVICE))
        assert [s.describe() for s in p.steps if s.kind == "create"] == [
            "create s/db: container missing",
            "create s/web: container missing",
        ]

    def test_blocked_dependency_blocks_its_dependents(self) -> None:
        """A dependent of a blocked service is held back too, and says which dependency."""
        db = service("s", "db")
        web = service("s", "web", depends_on=(Dependency("db"),))
        rt = _engine(FakeContainer(id="f", name="s-db"))
        p = plan(desired(stack("s", db, web)), rt.observe(DEVICE))
        assert p.is_empty
        assert p.blocked[1] == "s/web: dependency s/db cannot proceed"


class TestNetworks:
    def test_a_foreign_network_with_the_desired_name_blocks_its_services(self) -> None:
        """A network of the same name not owned by fleetgate is neither created nor used."""
        spec = service("s", "x", networks=(NetworkAttachment("s-net"),))
        rt = _engine()
        rt.add_network("s-net", "", "")
        p = plan(desired(stack("s", spec, networks=(NetworkSpec("s-net"),))), rt.observe(DEVICE))
        assert p.is_empty
        assert p.blocked == ("s/x: network s-net exists and is not managed by fleetgate",)

    def test_external_networks_are_never_created(self) -> None:
        """An external network is used as is: no create step even when it is not observed."""
        st = stack("s", service("s", "x"), networks=(NetworkSpec("plant", external=True),))
        assert [s.kind for s in plan(desired(st), _engine().observe(DEVICE)).steps] == [
            "create",
            "start",
        ]

    def test_a_network_dropped_from_a_live_stack_is_removed_after_containers(self) -> None:
        """A managed network no longer in its (still desired) stack goes after the recreate."""
        old = service("s", "x", networks=(NetworkAttachment("s-old"),))
        rt = _engine(container_of(old, "c1"))
        rt.add_network("s-old", DEVICE, "s")
        p = plan(desired(stack("s", service("s", "x"))), rt.observe(DEVICE))
        assert p.describe()[-1] == "remove network s-old: network removed from stack"
        assert p.describe()[0].startswith("create s/x as s-x-fgnew-")
        assert p.describe()[1] == "stop s/x (s-x): config-hash changed: networks"

    def test_containers_being_removed_are_left_to_the_engine(self) -> None:
        """A container in state removing is neither removed again nor replaced this pass."""
        spec = service("s", "x")
        gone = service("t", "y")
        rt = _engine(
            container_of(spec, "c1", state="removing"), container_of(gone, "c2", "removing")
        )
        p = plan(desired(stack("s", spec)), rt.observe(DEVICE))
        assert p.is_empty
        assert p.notes == ("s/x: a container is being removed; next pass",)
