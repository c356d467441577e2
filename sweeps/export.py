"""``python -m sweeps.export``: export the best (or top K) trials of a study to JSON.

The command lives in ``sweeps.cli.export``; this module is its entry point."""

from sweeps.cli.export import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
