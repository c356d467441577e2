"""``python -m sweeps.compare``: the trials of a study side by side.

The command lives in ``sweeps.cli.compare``; this module is its entry point."""

from sweeps.cli.compare import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
