"""What loading batches through a ``DataLoader`` costs a ``DatasetObjective``, and what a stack
of trials sharing each loaded batch saves, side by side in one process:

(a) the same digits (the train split of ``objectives.digits``, 1x8x8 images, batches of 64)
    as in-memory tensors, against a ``DataLoader`` over a ``Dataset`` of them, and against the
    same loader with the random shift and noise of ``examples.augmented_cnn``: one trial each
    (``sweeps.training.loop.train``), the three timed in turn, ``--repeats`` times;
(b) ``--trials`` trials of the augmented loader run one at a time, each loading every epoch
    itself, against the same trials as one stack (``sweeps.batched.train_batch``), which
    loads each epoch once for all its rows; beside them the same on the in-memory tensors,
    where a stack saves compute but no loading; in turn, ``--repeats`` times.

Each figure is the median of its repeats in CPU seconds of the process, on ``--threads``
torch threads (default 1); the ratios are of medians measured in the same run. Also timed:
one epoch's loading alone (iterating the batches, no training).

    python -m bench.data_loading
    python -m bench.data_loading --epochs 3 --trials 4 --repeats 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _seconds(run: Callable[[], Any]) -> float:
    """The CPU seconds this process spends in ``run()`` (other processes on a shared machine
    do not inflate them; the loaders here have no workers, so all their work is counted)."""
    start = time.process_time()
    run()
    return time.process_time() - start


def _objectives() -> dict[str, Any]:
    """The example's model on the digits' train split three ways, validated on tensors."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from examples.augmented_cnn import ShiftedDigits, SmallCNN
    from objectives.dataset import DatasetObjective, accuracy
    from objectives.digits import load_splits

    splits = load_splits(seed=0, shape=(1, 8, 8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN()
    common: dict[str, Any] = {"loss_fn": nn.functional.cross_entropy,
                              "validation": splits.validation, "batch_size": 64,
                              "metrics": {"accuracy": accuracy}}
    plain = DataLoader(ShiftedDigits(*splits.train), batch_size=64, shuffle=True)
    shifted = DataLoader(ShiftedDigits(*splits.train, augment=True), batch_size=64,
                         shuffle=True)
    return {"tensors": DatasetObjective(model, splits.train, **common),
            "loader": DatasetObjective(model, plain, **common),
            "augmented loader": DatasetObjective(model, shifted, **common)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.data_loading",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="epochs a trial (default: 10)")
    p.add_argument("--trials", type=int, default=8, help="trials in (b) (default: 8)")
    p.add_argument("--repeats", type=int, default=3, help="timings of each (default: 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    from sweeps.batched import train_batch
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    objectives = _objectives()
    adam = Hyperparams("adam", 0.003)
    lrs = [1e-3 * 1.5 ** i for i in range(args.trials)]
    hps = [Hyperparams("adam", lr) for lr in lrs]
    augmented, tensors = objectives["augmented loader"], objectives["tensors"]
    for objective in objectives.values():  # first-call costs, paid before the timings
        train(objective, adam, 1)
    train_batch(augmented, hps[:2], 1)
    train_batch(tensors, hps[:2], 1)

    single: dict[str, list[float]] = {name: [] for name in objectives}
    loading: dict[str, list[float]] = {name: [] for name in objectives}
    shared: dict[str, list[float]] = {"one at a time": [], "one stack": [],
                                      "tensors, one at a time": [], "tensors, one stack": []}
    cpu = torch.device("cpu")
    for _ in range(args.repeats):
        for name, objective in objectives.items():
            single[name].append(_seconds(lambda o=objective: train(o, adam, args.epochs)))
            loading[name].append(_seconds(lambda o=objective: list(o.batches(1, cpu))))
        shared["one at a time"].append(
            _seconds(lambda: [train(augmented, hp, args.epochs) for hp in hps]))
        shared["one stack"].append(
            _seconds(lambda: train_batch(augmented, hps, args.epochs)))
        shared["tensors, one at a time"].append(
            _seconds(lambda: [train(tensors, hp, args.epochs) for hp in hps]))
        shared["tensors, one stack"].append(
            _seconds(lambda: train_batch(tensors, hps, args.epochs)))

    median = {k: statistics.median(v) for k, v in {**single, **shared}.items()}
    load = {k: statistics.median(v) for k, v in loading.items()}
    figures = {
        "epochs": args.epochs, "trials": args.trials, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "steps_per_epoch": augmented.steps_per_epoch,
        "seconds": median, "epoch_loading_seconds": load,
        "loader_over_tensors": median["loader"] / median["tensors"],
        "augmented_over_tensors": median["augmented loader"] / median["tensors"],
        "one_at_a_time_over_stack": median["one at a time"] / median["one stack"],
        "tensors_one_at_a_time_over_stack": (median["tensors, one at a time"]
                                             / median["tensors, one stack"]),
    }
    print(f"(a) one trial of {args.epochs} epochs ({augmented.steps_per_epoch} batches each), "
          f"median of {args.repeats}, CPU seconds, {torch.get_num_threads()} torch thread(s):")
    for name in single:
        print(f"    {name:<17} {median[name]:7.3f} s   ({median[name] / median['tensors']:.2f}x"
              f" tensors; one epoch's loading alone {load[name] * 1e3:.1f} ms)")
    print(f"(b) {args.trials} trials of {args.epochs} epochs each, the augmented loader "
          "(the in-memory tensors beside it: what stacking gains without loading):")
    for name in shared:
        print(f"    {name:<22} {median[name]:7.3f} s")
    print(f"    one at a time / one stack: {figures['one_at_a_time_over_stack']:.2f}x "
          f"(tensors: {figures['tensors_one_at_a_time_over_stack']:.2f}x)")
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
