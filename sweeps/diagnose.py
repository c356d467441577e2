"""``python -m sweeps.diagnose``: why don't my parameters update? Probe one configuration and
suggest a learning rate.

The command lives in ``sweeps.cli.diagnose``; this module is its entry point."""

from sweeps.cli.diagnose import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
