"""``python -m sweeps.ui``: the MLflow UI on 127.0.0.1 against the project's store.

The command lives in ``sweeps.cli.ui``; this module is its entry point."""

from sweeps.cli.ui import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
