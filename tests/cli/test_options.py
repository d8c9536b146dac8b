"""CLI options are declared once (cli/options.py) and --help shows them in sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import invoke

CLI = Path(__file__).resolve().parents[2] / "onnxprune" / "cli"


def test_options_are_declared_only_in_options_py():
    for path in CLI.glob("*.py"):
        if path.name != "options.py":
            assert "click.option(" not in path.read_text(), path.name


def test_each_flag_is_declared_once():
    flags = re.findall(r'_option\(\w+, ((?:"-{1,2}[\w/-]+", )+)', (CLI / "options.py").read_text())
    names = [f for decl in flags for f in re.findall(r'"(-{1,2}[\w/-]+)"', decl)]
    assert len(names) > 30
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


@pytest.mark.parametrize("command,sections", [
    ("prune", ["Target", "Data", "Repair and fidelity", "Runtime", "Output"]),
    ("check", ["Data", "Repair and fidelity", "Runtime", "Output"]),
    ("analyze", ["Data", "Runtime", "Output"]),
])
def test_help_lists_options_by_section(command, sections):
    text = invoke(command, "--help").stdout
    found = re.findall(r"^(\w[\w ]*) options:$", text, flags=re.M)
    assert found == sections
    calib = text.index("  --calib PATH")
    assert text.index("Data options:") < calib < text.index(found[found.index("Data") + 1] + " options:")


def test_one_calib_help_for_every_command():
    helps = set()
    for command in ("prune", "check", "analyze", "sensitivity"):
        text = " ".join(invoke(command, "--help").stdout.split())
        helps.add(re.search(r"--calib PATH (.+?\.) ", text).group(1))
    assert len(helps) == 1


@pytest.mark.parametrize("option, value, hint", [("--target-flops", "70", "70% is 0.7"), ("--ratio", "50", "50% is 0.5"),
                                                 ("--target-flops", "1.5", None)])
def test_a_share_given_as_a_percentage_gets_the_fraction(option, value, hint, tmp_path):
    from tests.helpers.cli import assert_one_line_error
    digits = Path(__file__).resolve().parents[2] / "models" / "digits_cnn.onnx"
    r = invoke(str(digits), str(tmp_path / "o.onnx"), option, value)
    assert_one_line_error(r)
    assert (hint in r.stderr) if hint else ("% is" not in r.stderr)
