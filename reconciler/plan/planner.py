"""The planner: a pure diff from (desired state, observed state) to ordered steps.

``plan()`` reads no Docker, no files, no clock and no environment; the same inputs
always give the same :class:`Plan`. Someone else (:mod:`reconciler.engine.apply`) executes it.

Order of a plan, and why:

1. ``pull`` every image a (re)created service needs that is not present (or every time
   such a service is created with ``pull_policy: always``). All pulls come before
   anything stops: download-then-kill (safety rule 2). ``update_strategy:
   kill-then-download`` is not honoured (it would break that rule); the plan says so.
2. ``mkdir``/``materialize`` the data, lock and config paths of every stack that gets a
   container created or started (idempotent; when the caller observed which paths
   exist, only missing ones, for every stack: drift repair).
3. Missing managed networks and volumes.
4. Per stack (name order), services in ``depends_on`` order: missing → create+start;
   ``created`` → start; ``exited`` → start (unless it completed successfully and its
   restart policy would not restart it); ``dead`` → remove+create+start; config hash or
   name differs → create under a temporary name, then stop+remove the old one, rename
   the new one, start it (create before stop: a failed create touches nothing running;
   a container that does not run is simply removed first; a service with an explicit
   ``container_name`` takes the same path: Docker only needs names unique, and the real
   name is taken over after the old container is removed); extra containers of one
   service (crash leftovers, a temporary name among them) → stop+remove. A dependency
   that is started in this plan and named with ``service_healthy`` /
   ``service_completed_successfully`` gets a ``wait-healthy`` before its dependent starts.
5. Containers nobody desires (stack removed, service removed), then managed networks no
   desired stack uses (after their containers). Volumes and data dirs are never removed.
   Stacks in ``untouched`` (their application holds its update lock) are never pruned.

A service that cannot proceed (its name held by a foreign container, an image missing
under ``pull_policy: never``, a blocked dependency) gets a ``blocked`` reason instead of
steps, and its running container is left alone.
"""

from __future__ import annotations

from reconciler.model import DesiredState, ObservedContainer, ObservedState, ServiceSpec, StackSpec
from reconciler.plan.images import Pulls, image_present, pull_ahead
from reconciler.plan.order import dependency_order, dependency_waits
from reconciler.plan.paths import prepare_paths
from reconciler.plan.reasons import (
    changed_fields,
    create_reason,
    idle_note,
    prune_reason,
    start_reason,
)
from reconciler.plan.steps import (
    DESTRUCTIVE_KINDS,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    EnsureDirectory,
    MaterializeConfig,
    Plan,
    PullImage,
    RemoveContainer,
    RemoveNetwork,
    RenameContainer,
    StartContainer,
    Step,
    StopContainer,
    WaitHealthy,
    temp_name,
)

__all__ = [
    "DESTRUCTIVE_KINDS",
    "CreateContainer",
    "CreateNetwork",
    "CreateVolume",
    "EnsureDirectory",
    "MaterializeConfig",
    "Plan",
    "PullImage",
    "RemoveContainer",
    "RemoveNetwork",
    "RenameContainer",
    "StartContainer",
    "Step",
    "StopContainer",
    "WaitHealthy",
    "changed_fields",
    "image_present",
    "plan",
    "pull_ahead",
]

_RUNNING_STATES = frozenset({"running", "restarting", "paused"})
_ServiceKey = tuple[str, str]


def plan(
    desired: DesiredState,
    observed: ObservedState,
    *,
    existing_paths: frozenset[str] | None = None,
    untouched: frozenset[str] = frozenset(),
) -> Plan:
    """The steps that converge ``observed`` to ``desired``; pure and deterministic.

    ``existing_paths`` is what the caller saw in the host's state directory (data, lock
    and config paths that exist). ``None`` means "not observed": paths are then ensured
    only for stacks that get a container created or started, so a converged device's
    plan is empty. ``untouched`` stacks' observed containers and networks are never
    stopped or removed for not being desired (a held stack left out of ``desired``).
    """
    # A service with ``pull_policy: never`` may use an image another service pulls in
    # this plan: plan again with those pulls counted as present until nothing changes
    # (the set only grows and is bounded by the desired images, so this terminates).
    pulled: frozenset[str] = frozenset()
    while True:
        p = _Planner(desired, observed, pulled, untouched)
        service_steps: list[Step] = []
        touched: set[str] = set()
        for stack in desired.stacks:
            steps = p.stack_services(stack)
            if any(isinstance(s, CreateContainer | StartContainer) for s in steps):
                touched.add(stack.name)
            service_steps.extend(steps)
        if p.pulls.images() <= pulled:
            break
        pulled = pulled | p.pulls.images()
    prunes = p.prunes()
    prepare: list[Step] = []
    for stack in desired.stacks:
        if existing_paths is not None or stack.name in touched:
            prepare.extend(prepare_paths(stack, existing_paths))
    for stack in desired.stacks:
        prepare.extend(p.networks_and_volumes(stack))
    return Plan(
        steps=(*p.pulls.steps(), *prepare, *service_steps, *prunes),
        blocked=tuple(p.blocked),
        notes=tuple(p.notes),
        device=desired.device,
        revision=desired.revision,
    )


class _Planner:
    """Working memory of one ``plan()`` call; never escapes it."""

    def __init__(
        self,
        desired: DesiredState,
        observed: ObservedState,
        pulled: frozenset[str],
        untouched: frozenset[str],
    ) -> None:
        self.desired = desired
        self.observed = observed
        self.blocked: list[str] = []
        self.notes: list[str] = []
        self.pulls = Pulls(observed, pulled)  # phase 1
        wanted = {(st.name, sv.service) for st in desired.stacks for sv in st.services}
        ordered = sorted(observed.containers, key=lambda c: (c.stack, c.service, c.name, c.id))
        self.by_service: dict[_ServiceKey, list[ObservedContainer]] = {}
        for c in ordered:
            self.by_service.setdefault((c.stack, c.service), []).append(c)
        # Managed containers nobody desires: pruned last, unless a desired container
        # needs the name one of them holds (then it goes just before that create).
        # A container already being removed is left to the engine (never pruned twice).
        self.unwanted = {
            c.id: c
            for c in ordered
            if (c.stack, c.service) not in wanted
            and c.state != "removing"
            and c.stack not in untouched
        }
        self.untouched = untouched
        self.name_owner = {c.name: c for c in ordered}
        self.claimed: set[str] = set()
        self.stacks = {st.name for st in desired.stacks}
        self.held_back: set[_ServiceKey] = set()  # blocked or deferred: dependents wait
        self.started: set[_ServiceKey] = set()
        self.kept: dict[_ServiceKey, ObservedContainer] = {}
        self.lingering = {c.stack for c in ordered if c.state == "removing"}

    # ----------------------------------------------- phase 3: networks, volumes

    def networks_and_volumes(self, stack: StackSpec) -> list[Step]:
        have_nets = {n.name for n in self.observed.networks}
        have_vols = {v.name for v in self.observed.volumes}
        why = f"stack {stack.name}"
        out: list[Step] = [
            CreateNetwork(stack.name, n, why)
            for n in stack.networks
            if not n.external
            and n.name not in have_nets
            and n.name not in self.observed.foreign_networks
        ]
        out.extend(
            CreateVolume(stack.name, v, why)
            for v in stack.volumes
            if not v.external and v.name not in have_vols
        )
        return out

    # ------------------------------------------------------- phase 4: services

    def stack_services(self, stack: StackSpec) -> list[Step]:
        if stack.update_strategy == "kill-then-download":
            self.notes.append(
                f"{stack.name}: update_strategy kill-then-download is not honoured; "
                "images are always pulled before anything stops"
            )
        out: list[Step] = []
        for spec in dependency_order(stack.services):
            out.extend(self._service(stack, spec))
        return out

    def _service(self, stack: StackSpec, spec: ServiceSpec) -> list[Step]:
        key = (stack.name, spec.service)
        label = f"{stack.name}/{spec.service}"
        own = self.by_service.get(key, [])
        if any(c.state == "removing" for c in own):
            self.notes.append(f"{label}: a container is being removed; next pass")
            self.held_back.add(key)
            return []
        keeper = next(
            (
                c
                for c in own
                if c.name == spec.container_name
                and c.config_hash == spec.config_hash
                and c.state != "dead"
            ),
            None,
        )
        if keeper is not None:
            return self._keep(stack, spec, keeper, own)
        primary = next((c for c in own if c.name == spec.container_name), own[0] if own else None)
        reason = create_reason(primary, spec)
        block = self._create_block(stack, spec, own)
        if block is not None:
            stays = "; the running container stays" if own else ""
            self.blocked.append(f"{label}: {block}{stays}")
            self.held_back.add(key)
            return []
        self.pulls.want(spec)
        timeout = spec.stop_grace_period
        rev = self.desired.revision or ""
        # Create before stop (safety rule 9): a running container keeps its name until
        # its successor exists under a temporary one; leftovers of a crash go first.
        swap = primary is not None and primary.name == spec.container_name and (
            primary.state in _RUNNING_STATES)  # fmt: skip
        out: list[Step] = []
        for c in own:
            if c is not primary or not swap:
                why = reason if c is primary else f"duplicate container of {label}"
                out.extend(self.take_down(c, why, timeout))
        holder = self.name_owner.get(spec.container_name)
        if holder is not None and holder.id in self.unwanted:
            out.extend(self.take_down(holder, prune_reason(holder, self.stacks), None))
            del self.unwanted[holder.id]
        self.claimed.add(spec.container_name)
        if swap and primary is not None:
            temp = temp_name(spec)
            out.append(CreateContainer(spec, rev, reason, name=temp))
            out.extend(self.take_down(primary, reason, timeout))
            out.append(RenameContainer(temp, spec.container_name, stack.name, spec.service, reason))
        else:
            out.append(CreateContainer(spec, rev, reason))
        out.extend(dependency_waits(stack, spec, self.started, self.kept))
        out.append(StartContainer(spec.container_name, stack.name, spec.service, reason))
        self.started.add(key)
        return out

    def _keep(
        self,
        stack: StackSpec,
        spec: ServiceSpec,
        keeper: ObservedContainer,
        own: list[ObservedContainer],
    ) -> list[Step]:
        """The container matches: remove duplicates, start it if it should run."""
        key = (stack.name, spec.service)
        label = f"{stack.name}/{spec.service}"
        out: list[Step] = []
        for c in own:
            if c is not keeper:
                why = f"duplicate container of {label}"
                out.extend(self.take_down(c, why, spec.stop_grace_period))
        self.claimed.add(spec.container_name)
        why_start = start_reason(keeper, spec)
        if why_start is None:
            self.notes.append(f"{label}: {idle_note(keeper)}")
            self.kept[key] = keeper
            return out
        held = self._held_dependency(stack, spec)
        if held is not None:
            self.blocked.append(f"{label}: {held}")
            self.held_back.add(key)
            return out
        out.extend(dependency_waits(stack, spec, self.started, self.kept))
        out.append(StartContainer(keeper.name, stack.name, spec.service, why_start))
        self.started.add(key)
        return out

    def _create_block(
        self, stack: StackSpec, spec: ServiceSpec, own: list[ObservedContainer]
    ) -> str | None:
        """Why the container cannot be (re)created now, or ``None``."""
        name = spec.container_name
        if name in self.observed.foreign_names:
            return f"container name {name} is held by a container fleetgate does not manage"
        holder = self.name_owner.get(name)
        if name in self.claimed or (
            holder is not None and holder not in own and holder.id not in self.unwanted
        ):
            return f"container name {name} is used by another service"
        if holder is not None and holder.state == "removing" and holder not in own:
            return f"container name {name} is still being removed"
        foreign_nets = [
            a.network
            for a in spec.networks
            if a.network in self.observed.foreign_networks
            and any(n.name == a.network and not n.external for n in stack.networks)
        ]
        if foreign_nets:
            return f"network {foreign_nets[0]} exists and is not managed by fleetgate"
        return self.pulls.block(spec) or self._held_dependency(stack, spec)

    def _held_dependency(self, stack: StackSpec, spec: ServiceSpec) -> str | None:
        for dep in spec.depends_on:
            if (stack.name, dep.service) in self.held_back:
                return f"dependency {stack.name}/{dep.service} cannot proceed"
        return None

    # ------------------------------------------------------------ phase 5: prune

    def prunes(self) -> list[Step]:
        out: list[Step] = []
        for c in self.unwanted.values():
            out.extend(self.take_down(c, prune_reason(c, self.stacks), None))
        desired_nets = {n.name for st in self.desired.stacks for n in st.networks}
        held_stacks = {stack for stack, _ in self.held_back} | self.lingering | self.untouched
        for net in sorted(self.observed.networks, key=lambda n: n.name):
            if net.name in desired_nets:
                continue
            if net.stack in held_stacks:
                # A container left in place may still be attached: keep it until then.
                continue
            why = "stack removed" if net.stack not in self.stacks else "network removed from stack"
            out.append(RemoveNetwork(net.name, net.stack, why))
        return out

    def take_down(self, c: ObservedContainer, reason: str, timeout: float | None) -> list[Step]:
        """Stop (when it runs) and remove one managed, observed container."""
        out: list[Step] = []
        if c.state in _RUNNING_STATES:
            out.append(StopContainer(c.id, c.name, c.stack, c.service, timeout, reason))
        out.append(RemoveContainer(c.id, c.name, c.stack, c.service, reason))
        return out
