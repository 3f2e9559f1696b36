"""The render memo: one explicit value a caller creates and passes down (no module state).

``validate`` and ``impact`` render every device of a fleet (10,000 devices x ~3 stacks);
most of that work is the same for every device (see :mod:`reconciler.render.stack`).
A :class:`RenderCache` holds it for as long as its caller keeps it: create one per
repository snapshot (a validate run, one side of an impact, one revision of history,
one agent pass) and pass it to every ``render_device`` of that snapshot.

Keys are content (variable values, field values, label sets) or the object itself
wrapped in :class:`Ref`, which compares by identity *and keeps the object alive*, so an
entry can never be hit by a new object that happens to reuse a dead one's ``id()``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reconciler.render.hashing import HashMemo

if TYPE_CHECKING:
    from reconciler.model import GroupManifest
    from reconciler.render.stack import StackMemo, StackResult

T = TypeVar("T")

MEMO_SIZE = 4096
"""Entries of a stack table before the oldest is dropped."""


class Ref(Generic[T]):
    """A dict key that is ``obj`` itself, equal only to the very same object.

    Hashing by ``id`` is safe here because the key holds ``obj``: while the entry
    exists the object is alive, so no other object can get its id.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: T) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.obj is self.obj


class RenderCache:
    """Everything render remembers between devices of one repository snapshot."""

    __slots__ = ("groups", "hashes", "results", "stacks")

    def __init__(self) -> None:
        self.hashes = HashMemo()
        self.stacks: OrderedDict[tuple[Ref[Any], Ref[Any]], StackMemo] = OrderedDict()
        self.results: OrderedDict[tuple[Any, ...], StackResult] = OrderedDict()
        self.groups: dict[
            Ref[Mapping[str, GroupManifest]],
            dict[tuple[tuple[str, str], ...], tuple[GroupManifest, ...]],
        ] = {}


def remember(memo: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Store ``value`` and drop the oldest entry beyond :data:`MEMO_SIZE`."""
    memo[key] = value
    if len(memo) > MEMO_SIZE:
        memo.popitem(last=False)
