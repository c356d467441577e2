"""``python -m sweeps.train``: one training run with fixed hyperparameters, tracked like a trial.

The command lives in ``sweeps.cli.train``; this module is its entry point."""

from sweeps.cli.train import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    from sweeps.cli.common import run_command

    run_command(main)
