"""Rollout building blocks (pure), combined by :func:`reconciler.decide.passplan.decide`.

- :func:`fingerprint` and :func:`revision_id`: what identifies a desired state;
- :func:`is_update`: whether converging changes the applied revision (not drift repair);
- :func:`held_changes` and :func:`compose_target`: stacks whose application holds its
  update lock keep their last good definition while every other stack moves to the
  candidate; :func:`only_stacks` is what their pull-ahead reads.

Nothing here reads Docker, Git, files or the clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from hashlib import sha256

from reconciler.model import DesiredState, StackSpec
from reconciler.record import DeviceRecord, unstructure_state


def fingerprint(desired: DesiredState) -> str:
    """A digest of what the device should run (revision and windows excluded)."""
    data = unstructure_state(desired)["stacks"]
    return sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def revision_id(desired: DesiredState) -> str:
    """The revision to record: the commit SHA, or ``worktree:<digest>`` outside Git."""
    return desired.revision or f"worktree:{fingerprint(desired)[:16]}"


def is_update(record: DeviceRecord, desired: DesiredState) -> bool:
    """Whether converging to ``desired`` changes the applied revision (not drift repair)."""
    applied = record.last_applied
    return applied is None or applied.revision != revision_id(desired)


def held_changes(
    desired: DesiredState, last_good: DesiredState | None, held: Collection[str]
) -> tuple[str, ...]:
    """The ``held`` stacks whose definition ``desired`` changes (new, changed, removed).

    A locked stack that the candidate leaves as it is in the last good state holds
    nothing back: the rest of the update may be recorded as applied and good.
    """
    old = {} if last_good is None else {st.name: _digest(last_good, st) for st in last_good.stacks}
    new = {st.name: _digest(desired, st) for st in desired.stacks}
    return tuple(
        sorted(n for n in set(held) if (n in old or n in new) and old.get(n) != new.get(n))
    )


def compose_target(
    desired: DesiredState, last_good: DesiredState | None, held: Collection[str]
) -> DesiredState:
    """``desired`` with every ``held`` stack as it is in the last good state.

    A held stack that is new in ``desired`` (or has no last good definition) is left
    out; one that ``desired`` removes is kept. Revision and windows stay the candidate's.
    """
    old = {} if last_good is None else {st.name: st for st in last_good.stacks}
    stacks = [st for st in desired.stacks if st.name not in held]
    stacks.extend(old[name] for name in sorted(set(held)) if name in old)
    return dataclasses.replace(desired, stacks=tuple(sorted(stacks, key=lambda st: st.name)))


def only_stacks(desired: DesiredState, names: Collection[str]) -> DesiredState:
    """``desired`` restricted to the stacks in ``names`` (what a pull-ahead plan reads)."""
    return dataclasses.replace(
        desired, stacks=tuple(st for st in desired.stacks if st.name in names)
    )


def _digest(state: DesiredState, stack: StackSpec) -> str:
    return fingerprint(dataclasses.replace(state, stacks=(stack,)))
