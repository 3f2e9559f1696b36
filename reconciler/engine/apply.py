"""The executor: runs a :class:`~reconciler.plan.planner.Plan`'s steps in order, deciding nothing.

One branch per step kind (``match`` with ``assert_never``), one structlog event per
executed step (``step.applied`` with the step's kind, target and reason), bound once
with the device and revision. Any error stops the pass at that step and propagates:
the next pass re-observes and re-plans (a crash anywhere is recovered the same way).

Download-then-kill holds by construction: the plan puts every ``pull`` first, so when
one raises :class:`~reconciler.errors.ImageUnavailable` nothing has been stopped yet.
``apply`` refuses a plan that breaks that order rather than execute it.

Safety rule 9: before the first step, every path the plan writes under the state
directory and every state-directory bind source of a container it creates is checked
for a symlink (a container may have planted one in its data directory); one refuses
the whole plan with :class:`~reconciler.errors.PlantedLink` before anything is pulled,
stopped or written. ``mkdir`` and config writes then walk with ``O_NOFOLLOW``
(:mod:`reconciler.statedir`), and the engine checks the binds again right before it
creates the container.

Named crash points (``after-pull``, ``after-config``, ``after-create``, ``after-stop``,
``after-remove``, ``after-rename``, ``before-start``, ``after-start``) let crash tests
kill the process at exact points; they do nothing unless ``FLEETGATE_CRASH_AT`` is set.
(A seed step needs none: its file appears whole or not at all, see ``statedir.create_file``.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, assert_never

from structlog.typing import FilteringBoundLogger

from reconciler import statedir
from reconciler.crashpoints import crashpoint
from reconciler.engine.port import Runtime
from reconciler.errors import EngineError, HealthError, SourceError
from reconciler.model import ConfigFile, ObservedContainer
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
    SeedFile,
    StartContainer,
    Step,
    StopContainer,
    WaitHealthy,
)


class ConfigReader(Protocol):
    """Reads repository files of the revision being applied (``RepoTree`` satisfies it)."""

    def read_bytes(self, relpath: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one ``apply`` did: the steps executed, ids created and removed, in order."""

    steps_done: tuple[Step, ...]
    created: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(slots=True)
class _Pass:
    """What every step executor needs; lives for one ``apply`` call."""

    runtime: Runtime
    configs: ConfigReader
    log: FilteringBoundLogger
    device: str
    now: Callable[[], float]
    sleep: Callable[[float], None]
    poll_interval: float
    created: list[str]
    removed: list[str]


def apply(
    plan: Plan,
    runtime: Runtime,
    configs: ConfigReader,
    log: FilteringBoundLogger,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval: float = 1.0,
    on_step: Callable[[Step], None] | None = None,
) -> ApplyResult:
    """Execute ``plan`` against ``runtime`` in order; raise on the first failing step.

    ``clock``/``sleep`` are only used by ``wait-healthy`` (tests inject instant ones).
    Raises whatever the runtime raises (``EngineError``, ``ImageUnavailable``),
    ``HealthError`` when a dependency does not become healthy in time, and
    ``SourceError`` when a config file's content does not match its rendered digest.
    ``on_step`` is told of each step once it has been applied (the caller learns how far
    a failed plan got: whether anything running was touched).
    """
    _check_pulls_first(plan)
    _check_state_paths(plan)
    log = log.bind(device=plan.device, revision=plan.revision)
    ctx = _Pass(runtime, configs, log, plan.device, clock, sleep, poll_interval, [], [])
    done: list[Step] = []
    for step in plan.steps:
        try:
            fields = _execute(step, ctx)
        except Exception as e:
            log.error("step.failed", step=step.kind, reason=step.reason, error=str(e))
            raise
        log.info("step.applied", step=step.kind, reason=step.reason, **fields)
        done.append(step)
        if on_step is not None:
            on_step(step)
    return ApplyResult(tuple(done), tuple(ctx.created), tuple(ctx.removed))


def _check_pulls_first(plan: Plan) -> None:
    destructive = False
    for step in plan.steps:
        destructive = destructive or step.kind in DESTRUCTIVE_KINDS
        if destructive and step.kind == "pull":
            raise ValueError("plan pulls an image after stopping or removing something")


def _check_state_paths(plan: Plan) -> None:
    """Refuse the plan when a path it writes or mounts under the state dir has a symlink.

    Container binds first: their refusal names the service that would expose the host.
    """
    for step in plan.steps:
        if isinstance(step, CreateContainer):
            statedir.check_binds(step.spec)
    for step in plan.steps:
        if isinstance(step, EnsureDirectory):
            statedir.check_path(step.path, step.purpose, owner=step.reason)
        elif isinstance(step, MaterializeConfig):
            statedir.check_path(step.file.host_path, "config", owner=step.reason)
        elif isinstance(step, SeedFile):  # a link at the file itself is the app's: kept
            parent = step.file.host_path.rsplit("/", 1)[0]
            statedir.check_path(parent, "data", owner=step.reason)


def _execute(step: Step, ctx: _Pass) -> Mapping[str, object]:
    """Run one step; return the log fields that name its target."""
    runtime = ctx.runtime
    match step:
        case PullImage(image=image, platform=platform):

            def progress(event: str, fields: Mapping[str, object]) -> None:
                ctx.log.debug(event, **fields)

            runtime.pull(image, platform, progress)
            crashpoint("after-pull")
            return {"image": image}
        case EnsureDirectory(path=path, purpose=purpose):
            try:
                statedir.ensure_dir(path, purpose)
            except OSError as e:
                raise _host_error(f"creating {purpose} directory {path}", e) from None
            return {"path": path, "purpose": purpose}
        case MaterializeConfig(file=file):
            try:
                wrote = _materialize(file, ctx.configs)
            except OSError as e:
                raise _host_error(f"writing config {file.host_path}", e) from None
            crashpoint("after-config")
            return {"path": file.host_path, "digest": file.digest, "written": wrote}
        case SeedFile(file=file):
            try:
                seeded = seed_file(file, ctx.configs, ctx.log)
            except OSError as e:
                raise _host_error(f"seeding {file.host_path}", e) from None
            return {"path": file.host_path, "digest": file.digest, "written": seeded}
        case CreateNetwork(stack=stack, spec=spec):
            runtime.create_network(ctx.device, stack, spec)
            return {"network": spec.name}
        case CreateVolume(stack=stack, spec=vspec):
            runtime.create_volume(ctx.device, stack, vspec)
            return {"volume": vspec.name}
        case StopContainer(id=cid, stack=stack, service=service, timeout=timeout):
            runtime.stop_container(cid, timeout)
            crashpoint("after-stop")
            return {"service": f"{stack}/{service}", "container": step.name}
        case RemoveContainer(id=cid, stack=stack, service=service):
            runtime.remove_container(cid)
            ctx.removed.append(cid)
            crashpoint("after-remove")
            return {"service": f"{stack}/{service}", "container": step.name}
        case CreateContainer(spec=sspec, revision=revision, name=temp):
            new_id = runtime.create_container(sspec, revision, temp or None)
            ctx.created.append(new_id)
            crashpoint("after-create")
            return {"service": f"{sspec.stack}/{sspec.service}", "container": new_id}
        case RenameContainer(name=old_name, new_name=new_name, stack=stack, service=service):
            runtime.rename_container(old_name, new_name)
            crashpoint("after-rename")
            return {"service": f"{stack}/{service}", "container": new_name}
        case StartContainer(name=name, stack=stack, service=service):
            crashpoint("before-start")
            runtime.start_container(name)
            crashpoint("after-start")
            return {"service": f"{stack}/{service}", "container": name}
        case WaitHealthy():
            waited = _wait(step, ctx)
            return {"service": f"{step.stack}/{step.service}", "waited": waited}
        case RemoveNetwork(name=name):
            runtime.remove_network(name)
            return {"network": name}
        case _:
            assert_never(step)


def _host_error(action: str, error: OSError) -> EngineError:
    """A one-line error for a host path fleetgate could not prepare (never a traceback)."""
    return EngineError(
        f"{statedir.shown(action)} failed: {error.strerror or error}; "
        "check what is in its place under the state directory"
    )


def _materialize(file: ConfigFile, configs: ConfigReader) -> bool:
    """Write one config atomically unless it is already there; ``True`` when written."""
    present = statedir.read_file(file.host_path, "config")
    if present is not None and _digest(present[0]) == file.digest:
        if present[1] & 0o777 != file.mode:
            statedir.set_mode(file.host_path, file.mode)
        return False
    statedir.write_file(file.host_path, _checked(file, configs), file.mode, "config")
    return True


def _checked(file: ConfigFile, configs: ConfigReader) -> bytes:
    """The repository content of ``file``; ``SourceError`` unless it has the rendered digest."""
    data = configs.read_bytes(file.repo_path)
    if _digest(data) != file.digest:
        raise SourceError(
            f"{file.repo_path}: content changed since render (expected {file.digest}); "
            "the next pass renders it again"
        )
    return data


def seed_file(file: ConfigFile, configs: ConfigReader, log: FilteringBoundLogger) -> bool:
    """Copy a seed file into its data directory unless something is there (``True``:
    copied). A file already there is the app's and is kept; when it differs from this
    revision's seed, ``seed.kept`` says so (the app's copy wins, by design)."""
    present = statedir.read_file(file.host_path, "data")
    if present is not None:
        if _digest(present[0]) != file.digest:
            log.info("seed.kept", path=file.host_path, repo_path=file.repo_path)
        return False
    return statedir.create_file(file.host_path, _checked(file, configs), file.mode, "data")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _wait(step: WaitHealthy, ctx: _Pass) -> float:
    """Poll until ``step.condition`` holds; return seconds waited or raise ``HealthError``."""
    start = ctx.now()
    deadline = start + step.timeout
    label = f"{step.stack}/{step.service}"
    while True:
        c = ctx.runtime.inspect_container(step.name)
        failure = _wait_failure(c, step)
        if failure is not None:
            raise HealthError(f"{label}: {failure}")
        if c is not None and _wait_done(c, step):
            return ctx.now() - start
        remaining = deadline - ctx.now()
        if remaining <= 0:
            status = "gone" if c is None else (c.health or c.state)
            raise HealthError(
                f"{label} did not become {step.condition} within {step.timeout:g}s ({status})"
            )
        ctx.sleep(min(ctx.poll_interval, remaining))


def _wait_failure(c: ObservedContainer | None, step: WaitHealthy) -> str | None:
    """A state from which the condition can no longer be reached."""
    if c is None:
        return "container vanished"
    if c.state == "dead" or (c.state == "exited" and step.condition == "healthy"):
        return f"container {c.state} (code {c.exit_code})"
    if c.state == "exited" and c.exit_code != 0:
        return f"container exited (code {c.exit_code})"
    if step.condition == "healthy" and c.health == "unhealthy":
        return "container is unhealthy"
    return None


def _wait_done(c: ObservedContainer, step: WaitHealthy) -> bool:
    """``healthy``: running and healthy (or running without a healthcheck)."""
    if step.condition == "completed":
        return c.state == "exited" and c.exit_code == 0
    return c.state == "running" and c.health in (None, "healthy")
