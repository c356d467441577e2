"""The README's command-line reference, generated from the parsers themselves.

    python -m sweeps.cli.reference          # print it (Markdown)
    python -m sweeps.cli.reference --write    # replace the section in README.md

``tests/test_cli_reference.py`` fails when the README's section differs from this output.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from sweeps.cli.common import run_command

__all__ = ["COMMANDS", "main", "reference"]

COMMANDS = ("sweeps.run", "sweeps.train", "sweeps.export", "sweeps.compare",
            "sweeps.diagnose", "sweeps.ui")
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
WIDTH = "100"  # help text is wrapped at this many columns, whatever the terminal


def reference() -> str:
    """Each command's ``--help``, as Markdown."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parts = []
        for name in COMMANDS:
            parser = importlib.import_module(name).build_parser()
            parts.append(f"#### `python -m {name}`\n\n```text\n{parser.format_help()}```\n")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def readme_section(text: str) -> str:
    """What the README holds between the reference markers."""
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweeps.cli.reference", description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true", help="update README.md in place")
    args = p.parse_args(argv)
    text = reference()
    if not args.write:
        print(text)
        return 0
    readme = Path("README.md")
    content = readme.read_text(encoding="utf-8")
    before, rest = content.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_command(main)
