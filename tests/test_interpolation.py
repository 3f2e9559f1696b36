"""Compose interpolation: exact compose-go semantics, line-keeping document walk, variable sets."""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.compose import DOCKER_COMPOSE

from reconciler.manifests.yamlio import LineDict, LineList, parse_yaml
from reconciler.render.interpolation import (
    InvalidTemplate,
    RequiredVariable,
    interpolate_document,
    referenced_variables,
    substitute,
)

VARS = {"SET": "val", "EMPTY": ""}

# ----------------------------------------------------------------- reference evaluator
# A literal port of compose-go v2's template.SubstituteWithOptions (regex +
# ReplaceAllStringFunc + getFirstBraceClosingIndex + sorted substitution functions, first
# error wins), written independently of reconciler.render.interpolation's parser.
_PATTERN = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)"
    r"|\{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)\}|(?P<invalid>)))",
    re.IGNORECASE | re.ASCII,
)


class _RefInvalid(Exception):
    pass


class _RefRequired(Exception):
    pass


def _first_closing(s: str) -> int:
    depth, i = 0, 0
    while i < len(s):
        if s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if s[i] == "{":
            depth += 1
            i += 1
        i += 1
    return -1


def _subs_func(template: str) -> str:
    seps = [":?", "?", ":-", "-", ":+", "+"]
    return sorted(seps, key=lambda sep: (template.find(sep) < 0, template.find(sep)))[0]


def _apply(sep: str, sub: str, mapping: Mapping[str, str]) -> tuple[str, bool]:
    if sep not in sub:
        return "", False
    name, _, operand = sub.partition(sep)
    operand = reference(operand, mapping)
    value = mapping.get(name)
    if sep in (":-", "-"):
        absent = value is None or (sep == ":-" and value == "")
        return (operand if absent else value or ""), True
    if sep in (":+", "+"):
        present = value is not None and (sep == "+" or value != "")
        return (operand if present else value or ""), True
    if value is None or (sep == ":?" and value == ""):
        raise _RefRequired(name)
    return value, True


def reference(template: str, mapping: Mapping[str, str]) -> str:
    errors: list[Exception] = []

    def replace(m: re.Match[str]) -> str:
        substring = m.group(0)
        sep = _subs_func(substring)
        close = _first_closing(substring)
        rest = ""
        if close > -1:
            rest, substring = substring[close + 1 :], substring[: close + 1]
        g = _PATTERN.search(substring)
        assert g is not None
        try:
            if g.group("escaped"):
                return "$"
            sub, braced = g.group("named"), False
            if not sub:
                sub, braced = g.group("braced"), True
            if not sub:
                raise _RefInvalid(template)
            if braced:
                value, applied = _apply(sep, sub, mapping)
                if applied:
                    return value + reference(rest, mapping)
            return mapping.get(sub, "")
        except (_RefInvalid, _RefRequired) as e:
            errors.append(e)
            return ""

    result = _PATTERN.sub(replace, template)
    if errors:
        raise errors[0]
    return result


def outcome(fn: object, template: str, mapping: Mapping[str, str]) -> str:
    try:
        return "ok:" + fn(template, mapping)  # type: ignore[operator]
    except (InvalidTemplate, _RefInvalid):
        return "invalid"
    except (RequiredVariable, _RefRequired):
        return "required"


templates = st.text(alphabet=list("${}:-+?ABx_1 .\n"), max_size=24) | st.lists(
    st.sampled_from(
        ["$", "$$", "${", "}", "SET", "EMPTY", "U", ":-", "-", ":+", "+", ":?", "?", "x", " "]
    ),
    max_size=10,
).map("".join)


class TestSubstitute:
    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("${SET}", "val"),
            ("$SET.x", "val.x"),
            ("$SET$SET", "valval"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET:-${SET}x}y", "valxy"),
            ("${UNSET:-${UNSET2:-in}}out", "inout"),
            ("${SET:-a}}", "val}"),
            ("${UNSET:-{a}}", "{a}"),
            ("${UNSET:-$$}", "$"),
            ("$$x", "$x"),
            ("a$ b", "a$ b"),
            ("a$-b", "a$-b"),
            ("$1X", "$1X"),
            ("a$", "a$"),
            ("${SET:-x} $${SET}", "val ${SET}"),
            ("${UNSET-a-b:c}", "a-b:c"),
            ("${EMPTY?need}", ""),
            ("${UNSET:-{a}b}c}", "{a}bc}"),
            ("${SET:-$${}", "val"),
            ("${UNSET:-$${}", "${"),
            ("x\n${SET}", "x\nval"),
        ],
    )
    def test_matches_docker_compose(self, template: str, expected: str) -> None:
        """Each template evaluates as `docker compose config` 2.40 showed it does."""
        assert substitute(template, VARS) == expected

    @pytest.mark.parametrize(
        "template",
        [
            "${1X}",
            "${SET:x}",
            "${}",
            "${UNSET:-a",
            "${SET:-${}}",
            "${1}${EMPTY:?x}",
            "${SET:-a\nb}",
        ],
    )
    def test_malformed_braces_are_errors(self, template: str) -> None:
        """A `${` that forms no valid expression is an invalid-format error."""
        with pytest.raises(InvalidTemplate):
            substitute(template, VARS)

    @pytest.mark.parametrize(
        ("template", "variable", "message"),
        [
            ("${UNSET:?need it}", "UNSET", "need it"),
            ("${EMPTY:?need}", "EMPTY", "need"),
            ("${UNSET?}", "UNSET", ""),
            ("${UNSET:?${SET} missing}", "UNSET", "val missing"),
            ("${SET:+${X:?boom}}", "X", "boom"),
            ("${SET:-${X:?boom}}", "X", "boom"),
            ("${EMPTY:?}${", "EMPTY", ""),
            ("${EMPTY:?a}${UNSET:?b}", "EMPTY", "a"),
        ],
    )
    def test_required_variables_fail_with_their_message(
        self, template: str, variable: str, message: str
    ) -> None:
        """`:?`/`?` fail naming the variable and the interpolated message, operands eagerly."""
        with pytest.raises(RequiredVariable) as info:
            substitute(template, VARS)
        assert (info.value.variable, info.value.message) == (variable, message)

    @settings(max_examples=600, deadline=None)
    @given(template=templates)
    def test_agrees_with_compose_go_reference(self, template: str) -> None:
        """Any template gives the same value or the same error kind as compose-go's algorithm."""
        assert outcome(substitute, template, VARS) == outcome(reference, template, VARS)


class TestAgainstDockerCompose:
    def test_random_valid_templates_match_the_binary(self, tmp_path: Path) -> None:
        """A seeded sample of valid templates interpolates exactly as `docker-compose config`."""
        rng = random.Random(1234)
        pieces = ["$$", "${SET}", "$SET", "${EMPTY:-d}", "${U-x}", "${SET:+a}", "${U:-${SET}}"]
        pieces += ["{", "}", "-", "x", " ", "$", "${U:-{x}y}", "${SET:-$${}", "${SET:+{}"]
        sample: dict[str, str] = {}
        while len(sample) < 120:
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
            try:
                substitute(text, VARS)
            except (InvalidTemplate, RequiredVariable):
                continue
            sample[f"V{len(sample)}"] = text
        doc = {"services": {"a": {"image": "x", "environment": sample}}}
        (tmp_path / "compose.yaml").write_text(json.dumps(doc))
        proc = subprocess.run(
            [str(DOCKER_COMPOSE), "-f", "compose.yaml", "config", "--format", "json"],
            cwd=tmp_path,
            env={"SET": "val", "EMPTY": "", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        got = json.loads(proc.stdout)["services"]["a"]["environment"]
        for key, text in sample.items():
            # `config` re-escapes literal dollars as $$ in its output.
            assert got[key].replace("$$", "$") == substitute(text, VARS), text


class TestDocument:
    def test_values_are_interpolated_keys_kept_and_lines_preserved(self) -> None:
        """Every string value is interpolated recursively; keys stay; lines stay on new nodes."""
        doc = parse_yaml(
            "services:\n  ${SET}:\n    image: app:${SET}\n    command: [a, '${EMPTY:-b}', 3]\n",
            "c.yaml",
        )
        out, problems = interpolate_document(doc, VARS)
        assert problems == ()
        svc = out["services"]["${SET}"]
        assert svc["image"] == "app:val"
        assert svc["command"] == ["a", "b", 3]
        assert isinstance(svc, LineDict) and svc.line_of("command") == 4
        assert isinstance(svc["command"], LineList) and svc["command"].line_of(1) == 4
        assert doc["services"]["${SET}"]["image"] == "app:${SET}"  # input untouched

    def test_every_problem_is_reported_with_its_line(self) -> None:
        """All failing values are reported at once, each with line, key path and variable."""
        doc = parse_yaml("a: ${X:?need x}\nb:\n  - ok\n  - ${1}\n", "c.yaml")
        _, problems = interpolate_document(doc, {})
        assert [(p.line, p.key_path, p.variable) for p in problems] == [
            (1, "a", "X"),
            (4, "b[1]", None),
        ]

    def test_referenced_variables_include_nested_operands(self) -> None:
        """Names inside defaults and messages count; keys and escaped dollars do not."""
        doc = parse_yaml('${KEY}: ["${A:-${B}}", "$C", "$${D}", "${E:?${F}}", "${1}"]\n', "c")
        assert referenced_variables(doc) == frozenset({"A", "B", "C", "E", "F"})
