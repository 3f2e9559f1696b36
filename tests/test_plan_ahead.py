"""The pull-ahead plan and held (untouched) stacks, over generated desired and observed states."""

from __future__ import annotations

from fakes import DEVICE, FakeRuntime, container_of, desired, service, stack
from hypothesis import given
from hypothesis import strategies as st
from support.planstates import SETTINGS, desired_states, engines

from reconciler.plan.planner import DESTRUCTIVE_KINDS, image_present, plan, pull_ahead


class TestPullAhead:
    """A pull-ahead plan downloads what a state needs and touches no container."""

    @SETTINGS
    @given(data=st.data())
    def test_pull_ahead_is_only_pulls(self, data: st.DataObject) -> None:
        """A pull-ahead plan never contains a destructive step, nor any step but pull."""
        state = data.draw(desired_states())
        rt = data.draw(engines())
        ahead = pull_ahead(state, rt.observe(DEVICE))
        assert {s.kind for s in ahead.steps} <= {"pull"}
        assert not {s.kind for s in ahead.steps} & DESTRUCTIVE_KINDS

    @SETTINGS
    @given(data=st.data())
    def test_pull_ahead_pulls_exactly_the_missing_images(self, data: st.DataObject) -> None:
        """Every image a service may pull that is not present is pulled once; nothing else."""
        state = data.draw(desired_states())
        observed = data.draw(engines()).observe(DEVICE)
        pulled = [s.image for s in pull_ahead(state, observed).steps if s.kind == "pull"]
        missing = {
            spec.image
            for spec in state.services
            if spec.pull_policy != "never" and not image_present(spec.image, observed.images)
        }
        assert len(pulled) == len(set(pulled))
        assert set(pulled) == missing

    def test_skipped_and_present_images_are_not_pulled(self) -> None:
        """Images the pass pulls anyway, or that are here, get no pull-ahead step."""
        rt = FakeRuntime()
        rt.add_image("img/here:1")
        state = desired(
            stack("a", service("a", "x", "img/here:1"), service("a", "y", "img/skip:1")),
            stack("b", service("b", "z", "img/new:2"), service("b", "w", "img/new:2")),
        )
        ahead = pull_ahead(state, rt.observe(DEVICE), skip=["img/skip:1"])
        assert ahead.describe() == ("pull img/new:2: pulled ahead for b/z, b/w",)


class TestUntouchedStacks:
    """Stacks held by their application lock are never pruned by a plan."""

    @SETTINGS
    @given(data=st.data(), held=st.sets(st.sampled_from(["a", "b", "c", "gone"])))
    def test_untouched_stacks_lose_nothing(self, data: st.DataObject, held: set[str]) -> None:
        """No stop, remove or remove-network step names a held stack left out of the state."""
        state = data.draw(desired_states())
        rt = data.draw(engines())
        absent = frozenset(held) - {s.name for s in state.stacks}
        p = plan(state, rt.observe(DEVICE), untouched=frozenset(held))
        assert not [s for s in p.steps if s.kind in DESTRUCTIVE_KINDS and s.stack in absent], (
            p.describe()
        )

    def test_left_out_held_stack_keeps_running(self) -> None:
        """A held stack missing from the desired state keeps its container and network."""
        rt = FakeRuntime()
        rt.add_image("img/x:1")
        old = service("held", "web", "img/x:1")
        rt.add_container(container_of(old, "c1"))
        rt.add_network("held-net", DEVICE, "held")
        p = plan(desired(), rt.observe(DEVICE), untouched=frozenset({"held"}))
        assert p.is_empty
        assert plan(desired(), rt.observe(DEVICE)).describe() == (
            "stop held/web (held-web): stack removed",
            "remove held/web (held-web): stack removed",
            "remove network held-net: stack removed",
        )
