"""A training step of the bundled ``digits-cnn`` per trial: one trial as a careful user trains
it, against the rows of one stack, as one wider network and under ``vmap``.

    python -m bench.batched_cnn                   # stacks of 1, 2, 4, 8, 16 and 25 rows
    python -m bench.batched_cnn --rows 4,25 --rounds 5

- one trial: the objective's module as it is (``nn.Module``), a forward and backward pass of a
  mini-batch and ``torch.optim.Adam``'s step, zeroing the gradients first (``set_to_none``);
- a stack of K rows: ``MiniBatchBatch.train_step`` of the product (the forward and backward
  pass of every row, the stacked Adam update, the per-step statistics), on the objective as
  built (one wider network, ``objectives.stacked``) and with the lowering switched off (one
  ``vmap`` of ``functional_call``); its time divided by K.

Each is timed on the same mini-batch of 64 images over ``--steps`` steps after 5 warm-up steps,
the sides in turn within a round, ``--rounds`` rounds; the medians are printed, with the ratio
of one trial's step to a row's. torch runs the process's share of the cores (all of them).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

from .context import REPO
from .report import write_json

__all__ = ["main"]

DEFAULT_OUT = REPO / "bench" / "results" / "batched_cnn.json"


def one_trial(steps: int) -> Callable[[], float]:
    """Seconds per step of one trial trained the plain PyTorch way."""
    import torch

    from objectives import build

    objective = build("digits-cnn", {})
    module = copy.deepcopy(objective._module).train()
    inputs, targets = objective._pair(objective._sources["train"].take(
        next(iter(objective.batches(0, torch.device("cpu")))), torch.device("cpu")), "train")
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(module(inputs), targets).backward()
        optimizer.step()

    return lambda: _timed(step, steps)


def stack(rows: int, lowered: bool, steps: int) -> Callable[[], float]:
    """Seconds per step per row of a stack of ``rows`` Adam trials."""
    from objectives import build
    from sweeps.batched.trials import batched_stack
    from sweeps.training.hparams import Hyperparams

    objective = build("digits-cnn", {})
    if not lowered:
        objective._stacked = None
    hps = [Hyperparams("adam", 1e-3 * (1 + i / 10)) for i in range(rows)]
    batch = batched_stack(objective, hps, 20, "cpu")
    assert batch is not None
    assert (objective._stacked is not None) == lowered

    def step() -> None:
        batch.train_step(0, batch.first)

    return lambda: _timed(step, steps) / rows


def _timed(step: Callable[[], None], steps: int) -> float:
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batched_cnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="1,2,4,8,16,25", help="stack sizes, comma-separated")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    import torch

    sizes = [int(k) for k in args.rows.split(",")]
    sides: dict[str, Callable[[], float]] = {"one trial": one_trial(args.steps)}
    for k in sizes:
        sides[f"stack of {k}, one network"] = stack(k, True, args.steps)
        sides[f"stack of {k}, vmap"] = stack(k, False, args.steps)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, measure in sides.items():
            times[name].append(measure())
    medians = {name: statistics.median(t) for name, t in times.items()}
    alone = medians["one trial"]
    print(f"digits-cnn, a step of a mini-batch of 64, torch threads {torch.get_num_threads()}, "
          f"medians of {args.rounds} rounds of {args.steps} steps")
    print(f"{'':28} {'ms/trial':>9} {'one trial / this':>17}")
    for name, value in medians.items():
        print(f"{name:28} {1000 * value:9.2f} {alone / value:17.2f}")
    write_json(args.out, {"threads": torch.get_num_threads(), "times_s": times,
                          "medians_s": medians})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
