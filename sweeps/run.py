"""``python -m sweeps.run``: run or resume a learning-rate sweep.

The command lives in ``sweeps.cli.run``; this module is its entry point."""

from sweeps.cli.run import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
