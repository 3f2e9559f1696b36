"""The one vocabulary of where a pass stopped: :class:`Stage`.

A shared module on the top floor, so the pure build stage (``render/desired.py``
reports ``manifests``, ``render``, ``policy`` as it starts each) and the pass
(``reconcile/``, which names the rest) use the same values; the status document and
``--output json`` carry :attr:`Stage.value` (``PassResult.stage``, ``Status.stage``).
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The pipeline stages in pass order; a member is its JSON string (``"plan"``)."""

    SOURCE = "source"
    MANIFESTS = "manifests"
    RENDER = "render"
    POLICY = "policy"
    DECIDE = "decide"
    GATE = "gate"
    PLAN = "plan"
    APPLY = "apply"
    HEALTH = "health"
    ROLLBACK = "rollback"


def stage_from_json(value: object) -> Stage | None:
    """The stage a status document names (``null``: none); ``ValueError`` for any other value."""
    if value is None:
        return None
    if isinstance(value, str) and value in _VALUES:
        return Stage(value)
    shown = ascii(str(value)[:40])
    raise ValueError(f"status does not match its schema: unknown stage {shown}")


_VALUES = frozenset(stage.value for stage in Stage)
