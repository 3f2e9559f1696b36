"""Values the engine refuses, control characters and non-text keys, at the loader and in output."""

from __future__ import annotations

import io
from typing import Any

import pytest

from reconciler.cli import EscapingWriter
from reconciler.errors import Finding, ManifestError, escape_text
from reconciler.manifests.schema import control_findings
from reconciler.manifests.yamlio import parse_yaml
from reconciler.units import parse_bytes, parse_duration


def refusal(text: str | bytes) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_yaml(text, "f.yaml")
    (finding,) = caught.value.findings
    return str(finding)


class TestNumbers:
    @pytest.mark.parametrize("literal", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1e999"])
    def test_non_finite_floats_are_refused(self, literal: str) -> None:
        """NaN and infinities are refused at their line: no engine field takes them."""
        assert refusal(f"a: 1\nb: {literal}\n").startswith("f.yaml:2: ")
        assert "is not a finite number" in refusal(f"b: {literal}")

    @pytest.mark.parametrize(
        "literal", ["9223372036854775808", "-9223372036854775809", "0x1" + "0" * 16]
    )
    def test_integers_beyond_64_bits_are_refused(self, literal: str) -> None:
        """An integer outside int64 is a finding, not a value some stage overflows on."""
        assert "does not fit in 64 bits" in refusal(f"a: {literal}")

    def test_the_64_bit_bounds_are_accepted(self) -> None:
        """The largest and smallest int64 still load as numbers."""
        doc = parse_yaml("a: 9223372036854775807\nb: -9223372036854775808\n", "f.yaml")
        assert (doc["a"], doc["b"]) == (2**63 - 1, -(2**63))

    def test_a_5000_digit_integer_is_refused_before_conversion(self) -> None:
        """Python's 4,300-digit conversion limit never surfaces as a ValueError."""
        assert (
            refusal("a: " + "9" * 5000)
            == "f.yaml:1: YAML: integer of 5000 digits is out of range; quote it"
        )

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("!!int abc", "is not an integer"),
            ("!!float x", "is not a number"),
            ("!!bool yes", "is not true or false"),
        ],
    )
    def test_explicit_core_tags_on_wrong_text_are_findings(self, text: str, reason: str) -> None:
        """An explicit core tag on text it cannot construct is a finding, not a crash."""
        assert reason in refusal(f"a: {text}")

    def test_quoted_numbers_stay_text(self) -> None:
        """Quoting is the way out the messages suggest: a quoted .nan is the text .nan."""
        assert parse_yaml('a: ".nan"\nb: "99999999999999999999"\n', "f.yaml") == {
            "a": ".nan",
            "b": "99999999999999999999",
        }

    def test_durations_and_sizes_beyond_int64_are_refused(self) -> None:
        """A duration or size the engine cannot count in int64 is a ValueError with a hint."""
        with pytest.raises(ValueError, match="longer than the engine can count"):
            parse_duration("9" * 400 + "s")
        with pytest.raises(ValueError, match="larger than the engine can count"):
            parse_bytes("99999999999999999999g")
        assert parse_duration("2562047h") == 2562047 * 3600.0  # just inside int64 ns


class TestTagsAndKeys:
    @pytest.mark.parametrize(
        "tag",
        [
            "!!binary aGk=",
            "!!timestamp 2020-01-01",
            "!!set {a}",
            "!!python/object/apply:os.system [id]",
            "!custom x",
        ],
    )
    def test_only_core_types_are_constructed(self, tag: str) -> None:
        """Tags beyond the core types (bytes, dates, sets, code, custom) are refused."""
        assert "is not allowed (only plain YAML values are); remove it" in refusal(f"a: {tag}")

    @pytest.mark.parametrize(
        ("key", "reason"),
        [
            ("null", "is empty (null)"),
            ("~", "is empty (null)"),
            ("true", "True is not a name"),
            ("5", "5 is not a name"),
            ("1.5", "1.5 is not a name"),
        ],
    )
    def test_non_text_keys_are_refused(self, key: str, reason: str) -> None:
        """Every key of a manifest is a name, so a null, boolean or number key is a finding."""
        assert reason in refusal(f"env:\n  {key}: x\n")

    def test_control_characters_in_keys_are_refused(self) -> None:
        """A key holding ESC is refused, naming the character."""
        assert refusal('"a\\eb": 1').endswith("key contains a control character U+001B; remove it")

    def test_nul_is_refused_in_any_text(self) -> None:
        """NUL cannot reach the engine, even in free text like a command."""
        assert "NUL character (U+0000)" in refusal('command: ["a\\0b"]')

    def test_merge_keys_and_aliases_still_load(self) -> None:
        """The key checks do not break YAML's merge key and aliases."""
        doc = parse_yaml("base: &b {x: 1}\nuse: {<<: *b, y: 2}\n", "f.yaml")
        assert doc["use"] == {"x": 1, "y": 2}


class TestEncodings:
    def test_invalid_utf8_names_its_line(self) -> None:
        """Bytes that are not UTF-8 are one line naming the line and the byte."""
        assert (
            refusal(b"a: 1\nb: \xff\n")
            == "f.yaml:2: is not valid UTF-8 text (byte 0xff); save it as UTF-8"
        )

    def test_a_raw_control_character_names_its_line(self) -> None:
        """A raw ESC in the file is refused at its line with its code point."""
        assert refusal("a: 1\nb: x\x1by\n").startswith(
            "f.yaml:2: contains a control character U+001B"
        )

    def test_a_utf8_bom_is_accepted(self) -> None:
        """A BOM written by an editor is not an error."""
        assert parse_yaml(b"\xef\xbb\xbfa: 1\n", "f.yaml") == {"a": 1}

    def test_tab_indentation_is_explained(self) -> None:
        """A tab-indented line gets a hint, not PyYAML's token jargon."""
        assert (
            refusal("a:\n\tb: 1\n")
            == "f.yaml:2: YAML: a tab indents this line; YAML indents with spaces only"
        )


def controls(text: str) -> list[str]:
    return [str(f) for f in control_findings(parse_yaml(text, "c.yaml"), "c.yaml")]


class TestNamesAndFreeText:
    def test_image_label_and_container_name_are_names(self) -> None:
        """Control characters in an image, a label value or a container name are findings."""
        found = controls(
            'services:\n  x:\n    image: "a\\e[31m"\n'
            '    labels: {k: "\\u202e"}\n    container_name: "c\\a"\n'
        )
        assert found == [
            "c.yaml:3: services.x.image contains a control character U+001B; remove it",
            "c.yaml:4: services.x.labels.k contains a control character U+202E; remove it",
            "c.yaml:5: services.x.container_name contains a control character U+0007; remove it",
        ]

    def test_command_environment_and_variables_may_hold_tabs_and_newlines(self) -> None:
        """Program input keeps its tabs and newlines (escaped when printed)."""
        text = (
            'variables: {A: "x\\ty"}\nservices:\n  x:\n    image: x\n'
            '    command: ["a\\nb"]\n    environment: {A: "\\e"}\n'
        )
        assert controls(text) == []

    def test_an_environment_list_name_is_a_name(self) -> None:
        """In ``- NAME=value`` the name is checked, the value is free text."""
        found = controls('services:\n  x:\n    environment: ["A\\u2066=1", "B=\\t"]\n')
        assert found == [
            "c.yaml:3: services.x.environment[0] (the name) "
            "contains a control character U+2066; remove it"
        ]

    def test_a_service_named_like_a_free_text_key_is_still_checked(self) -> None:
        """Free text is decided by position, so a service called ``command`` is no loophole."""
        assert controls('services:\n  command:\n    image: "a\\e"\n') == [
            "c.yaml:3: services.command.image contains a control character U+001B; remove it"
        ]


class TestEscapedOutput:
    def test_findings_print_escaped(self) -> None:
        """A finding's path and message never carry a raw control character."""
        finding = Finding("devices/a\u202eb.yaml", 2, "name 'x\x1b[2Jy\nz'")
        assert str(finding) == "devices/a\\u202eb.yaml:2: name 'x\\x1b[2Jy\\x0az'"

    def test_escape_text_leaves_printable_text_alone(self) -> None:
        """Ordinary text, including non-ASCII letters, is untouched."""
        assert escape_text("Grüße, 東京, ok") == "Grüße, 東京, ok"

    def test_the_output_stream_escapes_all_but_newline_and_tab(self) -> None:
        """stdout keeps its layout (newline, tab) and escapes the rest as JSON-valid \\uNNNN."""
        target: Any = io.StringIO()
        EscapingWriter(target).write("a\tb\x1b[31m\u202e\x85\r\n")
        assert target.getvalue() == "a\tb\\u001b[31m\\u202e\\u0085\\u000d\n"
