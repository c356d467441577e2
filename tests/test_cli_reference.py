"""The README's command-line reference is what the parsers say today."""

from __future__ import annotations

from pathlib import Path

from sweeps.cli.reference import readme_section, reference


def test_readme_cli_reference_matches_the_parsers() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme_section(readme) == reference().strip("\n"), (
        "README.md's CLI reference is stale: run `python -m sweeps.cli.reference --write`")
