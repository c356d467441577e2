"""Every ``n``-th of the workers section's trials, trained with nothing else: no Optuna, no
MLflow, no metric writer, only ``sweeps.training.loop.train``. Prints one JSON object: the
seconds each trial took. Started once alone and twice side by side, it measures what two processes
of this workload gain on this machine: the ceiling for ``--workers 2`` against 1.

    python -m bench.train_only --trials 16 --epochs 10000 --part 0/2
"""

from __future__ import annotations

import argparse
import json
import time

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_only", description=__doc__)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--part", default="0/1", help="i/n: trials i, i+n, i+2n, ...")
    args = p.parse_args(argv)
    index, parts = (int(x) for x in args.part.split("/"))

    from objectives import build
    from sweeps.training.loop import train

    from .workers import trial_hparams

    objective = build("rebalance", {})
    hps = trial_hparams(args.trials, args.epochs)[index::parts]
    train(objective, hps[0], 100)  # first-call costs, as a sweep's first trial pays them
    seconds = []
    for hp in hps:
        start = time.perf_counter()
        train(objective, hp, args.epochs)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"part": args.part, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
