"""Rollout building blocks (pure): stacks held by application locks (windows: test_decide)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fakes import desired, service, stack

from reconciler.decide.gates import held_reason
from reconciler.decide.rollout import (
    compose_target,
    held_changes,
    only_stacks,
)
from reconciler.model import DesiredState

OLD = desired(
    stack("app", service("app", "web", "img/app:1")),
    stack("mqtt", service("mqtt", "broker", "img/broker:1")),
    stack("gone", service("gone", "job", "img/job:1")),
    revision="a" * 40,
)
NEW = desired(
    stack("app", service("app", "web", "img/app:2")),
    stack("mqtt", service("mqtt", "broker", "img/broker:2")),
    stack("added", service("added", "x", "img/x:1")),
    revision="b" * 40,
)


def names(state: DesiredState) -> list[str]:
    return [st.name for st in state.stacks]


class TestComposeTarget:
    """Held stacks keep their last good definition; the rest move to the candidate."""

    def test_held_stack_keeps_its_last_good_definition(self) -> None:
        """A held changed stack is taken from the last good state, the others from the candidate."""
        out = compose_target(NEW, OLD, {"mqtt"})
        assert names(out) == ["added", "app", "mqtt"]
        assert out.stacks[1] == NEW.stacks[1]
        assert [s.image for s in out.stacks[2].services] == ["img/broker:1"]
        assert out.revision == NEW.revision

    def test_held_new_stack_is_left_out_and_removed_one_kept(self) -> None:
        """A held stack the candidate adds is left out; one it removes is kept."""
        out = compose_target(NEW, OLD, {"added", "gone"})
        assert names(out) == ["app", "gone", "mqtt"]

    def test_nothing_held_is_the_candidate(self) -> None:
        """Without held stacks the composed target is the candidate itself."""
        assert compose_target(NEW, OLD, ()) == NEW

    def test_without_last_good_held_stacks_are_left_out(self) -> None:
        """With no last good state a held stack has nothing to stay on: it is left out."""
        assert names(compose_target(NEW, None, {"app"})) == ["added", "mqtt"]


class TestHeldChanges:
    """Only locked stacks the candidate changes hold anything back."""

    def test_changed_added_and_removed_stacks_are_held(self) -> None:
        """A lock counts for a changed, a new and a removed stack, sorted."""
        assert held_changes(NEW, OLD, {"mqtt", "added", "gone"}) == ("added", "gone", "mqtt")

    def test_unchanged_or_unknown_stack_holds_nothing(self) -> None:
        """A locked stack equal in both states, or in neither, holds nothing."""
        old_app = next(st for st in OLD.stacks if st.name == "app")
        same = replace(NEW, stacks=tuple(old_app if st.name == "app" else st for st in NEW.stacks))
        assert held_changes(same, OLD, {"app", "nowhere"}) == ()

    def test_only_stacks_keeps_the_named_ones(self) -> None:
        """The pull-ahead input of held stacks is the candidate restricted to them."""
        assert names(only_stacks(NEW, {"mqtt", "gone"})) == ["mqtt"]


class TestHeldReason:
    """The lock reason names each held stack and when its deferral ends."""

    def test_reason_names_stack_lock_file_and_end(self) -> None:
        """Known ends are RFC 3339 UTC; unknown ones wait for the file's removal."""
        until = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
        assert held_reason({"mqtt": until, "app": None}) == (
            "held by application lock: app (updates.lock), until its removal; "
            "mqtt (updates.lock), until 2026-11-24T23:00:00Z or its removal"
        )
        assert held_reason({}) == ""
