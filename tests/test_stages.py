"""The one Stage vocabulary: its JSON strings and how a status document names a stage."""

from __future__ import annotations

import json

import pytest

from reconciler.report.status import Status, status_from_json
from reconciler.stages import Stage, stage_from_json

# The strings the status document and `--output json` have always carried (pinned).
JSON_VALUES = (
    "source", "manifests", "render", "policy", "decide",
    "gate", "plan", "apply", "health", "rollback",
)  # fmt: skip


class TestStage:
    def test_json_values_are_the_documented_strings(self) -> None:
        """Every stage serialises as the lowercase string the status document always used."""
        assert tuple(stage.value for stage in Stage) == JSON_VALUES
        assert json.dumps([Stage.PLAN]) == '["plan"]'

    @pytest.mark.parametrize("stage", list(Stage))
    def test_a_status_document_round_trips_each_stage(self, stage: Stage) -> None:
        """A status written with a stage reads back as the same Stage member."""
        document = json.loads(json.dumps(Status("d1", stage=stage).to_json()))
        assert type(document["stage"]) is str
        assert status_from_json(document).stage is stage

    def test_no_stage_reads_back_as_none(self) -> None:
        """A pass that went through (stage null) reads back without a stage."""
        assert stage_from_json(None) is None
        assert status_from_json(Status("d1").to_json()).stage is None

    @pytest.mark.parametrize("value", ["launch", "", 3, ["plan"], "PLAN"])
    def test_an_unknown_stage_is_a_schema_error(self, value: object) -> None:
        """A stage the vocabulary does not know is rejected as one schema line, not taken."""
        document = {**Status("d1").to_json(), "stage": value}
        with pytest.raises(ValueError, match=r"^status does not match its schema: unknown stage"):
            status_from_json(document)
