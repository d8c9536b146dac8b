"""Docs that ship and docs that stay true: --help points at nothing that is not installed, the
README's first command leaves the repository clean, docs cite functions that exist, and the
package metadata builds without deprecation warnings (SPDX license string)."""

import re
from pathlib import Path

import pytest

import onnxprune.io
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [[], ["prune"], ["check"], ["bench"], ["sensitivity"], ["analyze"]])
def test_help_needs_no_docs_that_are_not_installed(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "docs/" not in result.stdout and ".md" not in result.stdout


def test_main_help_states_the_exit_codes():
    text = " ".join(invoke("--help").stdout.split())
    assert "0 done" in text and "1 error" in text and "3 FAILED" in text and "130 interrupted" in text


def test_license_is_an_spdx_string():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_readme_first_command_writes_into_an_ignored_folder():
    readme = (REPO / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.strip().startswith('pip install ".[cpu]"'))
    outputs = re.findall(r"onnxprune models/\S+ (\S+\.onnx)", first)
    assert outputs and all(o.startswith("out/") for o in outputs)
    assert "/out/" in (REPO / ".gitignore").read_text().split()


def test_architecture_cites_io_functions_that_exist():
    cited = set(re.findall(r"`io\.(\w+)`", (REPO / "docs" / "ARCHITECTURE.md").read_text()))
    assert cited and all(hasattr(onnxprune.io, name) for name in cited), cited


def test_exit_codes_and_json_are_documented():
    readme = (REPO / "README.md").read_text()
    json_doc = (REPO / "docs" / "JSON.md").read_text()
    for code in ("**0**", "**1**", "**3**", "**130**"):
        assert code in readme
    assert "schema_version" in json_doc and "NOT CHECKED" in json_doc and "| 3 |" in json_doc
