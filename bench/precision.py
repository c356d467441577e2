"""Mixed precision on the bundled CNN: the default ``digits-cnn`` sweep at fp32 and at bf16.

    python -m bench.precision                        # rounds of fp32 then bf16: A B A B
    python -m bench.precision --rounds 3 --n-trials 20

Each sweep is ``python -m sweeps.run --objective digits-cnn --precision P --quiet --no-plots``
with the product's other defaults (50 trials of 20 epochs, ``--batch 25`` at a measured
width) on fresh stores in a temporary folder, the two precisions alternating so that both
see the same load on a shared machine, after an untimed short sweep at each (the first
process to load torch and the rest from disk pays for it). Each sweep's best trial (by the
study's metric, the validation loss) is exported with ``python -m sweeps.export`` and its
run's ``test_accuracy`` read from MLflow. Then the first fp32 sweep's best configuration
trains again alone (one trial, its 20 epochs, in this process) at each precision,
alternating for as many rounds, so that the test accuracies compare one configuration rather
than two searches. Last, what a training step costs a trial at each precision on one torch
thread (as the sweep's sizing measures it): alone, in the sequential loop, and as a row of a
stack of 25 (``--stack``), alternating for as many rounds.

Prints each sweep (wall time, best trial, its test accuracy, the stack width chosen and the
step times per trial the sweep measured to choose it), the wall-time ratio fp32 / bf16 of
each round and of the medians, and the test-accuracy differences; records the machine
(cores, load average before and after each sweep, whether the CPU has AMX or AVX-512
bfloat16 instructions) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .context import REPO
from .procs import run_measured
from .report import write_json

OBJECTIVE = "digits-cnn"
PRECISIONS = ("fp32", "bf16")
DEFAULT_OUT = REPO / "bench" / "results" / "precision.json"


def cpu() -> dict[str, Any]:
    """The machine: its cores, its CPU's name and bfloat16 instructions (Linux)."""
    flags: set[str] = set()
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "model name" and value.strip():
                name = value.strip()
    except OSError:
        pass
    return {"cores": os.cpu_count(), "name": name, "amx_bf16": "amx_bf16" in flags,
            "avx512_bf16": "avx512_bf16" in flags}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}


def _sweep_command(precision: str, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.run", "--objective", OBJECTIVE, "--precision",
            precision, "--study", OBJECTIVE, "--storage", f"sqlite:///{folder}/optuna.db",
            "--tracking-uri", f"sqlite:///{folder}/mlflow.db", "--quiet", "--no-plots", *extra]


def warm_up(folder: Path) -> None:
    """A short sweep at each precision, untimed."""
    for precision in PRECISIONS:
        where = folder / f"warm-up-{precision}"
        where.mkdir()
        run_measured(_sweep_command(precision, where, "--n-trials", "2", "--epochs", "1"),
                     cwd=where, env=_env()).check()


def sweep(precision: str, folder: Path, n_trials: int | None) -> dict[str, Any]:
    """The default sweep at ``precision`` in ``folder`` and what its best trial scored."""
    from mlflow import MlflowClient

    storage, tracking = f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"
    env = _env()
    stores = ["--study", OBJECTIVE, "--storage", storage]
    load_before = os.getloadavg()
    run = run_measured(_sweep_command(precision, folder, *(["--n-trials", str(n_trials)]
                                                           if n_trials else [])),
                       cwd=folder, env=env).check()
    load_after = os.getloadavg()
    run_measured([sys.executable, "-m", "sweeps.export", *stores, "--out", "best.json"],
                 cwd=folder, env=env).check()
    best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
    client = MlflowClient(tracking_uri=tracking)
    metrics = client.get_run(best["mlflow_run_id"]).data.metrics
    import optuna

    study = optuna.load_study(study_name=OBJECTIVE, storage=storage)
    choice = study.user_attrs.get("trial_batch", {})
    return {"precision": best["precision"], "wall_s": run.wall_s, "trial": best["trial"],
            "params": best["params"], "val_loss": best["value"],
            "test_accuracy": metrics["test_accuracy"], "width": choice.get("width"),
            "step_ms": choice.get("step_ms"),
            "trials": len(study.trials), "load_before": load_before, "load_after": load_after}


def alone(params: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    """``params`` trained alone at each precision in this process (20 epochs), alternating
    for ``rounds`` rounds after an untimed epoch of each: test accuracy and seconds."""
    from objectives import build, evaluate
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train
    from sweeps.training.precision import at_precision

    base = build(OBJECTIVE)
    hp = Hyperparams.from_dict(params)
    for precision in PRECISIONS:  # first uses (kernels chosen, buffers allocated) untimed
        train(at_precision(base, precision), hp, 1)
    rows = []
    for _ in range(rounds):
        for precision in PRECISIONS:
            objective = at_precision(base, precision)
            start = time.perf_counter()
            result = train(objective, hp, objective.default_epochs)
            seconds = time.perf_counter() - start
            scores = (evaluate(objective, result.params, result.buffers) if result.params
                      else {})
            rows.append({"precision": precision, "status": result.status, "seconds": seconds,
                         "test_accuracy": scores.get("test_accuracy"),
                         "load": os.getloadavg()[0]})
    return rows


def step_costs(rounds: int, width: int, epochs: int = 2) -> list[dict[str, Any]]:
    """Milliseconds a training step costs a trial of ``OBJECTIVE`` (sgd, lr 0.1) on one torch
    thread: alone (``train``) and as a row of a stack of ``width`` (``train_batch``), at each
    precision, alternating for ``rounds`` rounds after an untimed first one."""
    import torch

    from objectives import build
    from sweeps.batched import train_batch
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train
    from sweeps.training.precision import at_precision

    base = build(OBJECTIVE)
    hp = Hyperparams("sgd", 0.1)
    steps = epochs * base.steps_per_epoch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for precision in PRECISIONS:  # first uses (kernels chosen, buffers allocated) untimed
            train(at_precision(base, precision), hp, 1)
            train_batch(at_precision(base, precision), [hp] * width, 1, width=width)
        for _ in range(rounds):
            for precision in PRECISIONS:
                objective = at_precision(base, precision)
                start = time.perf_counter()
                train(objective, hp, epochs)
                lone = time.perf_counter() - start
                start = time.perf_counter()
                train_batch(objective, [hp] * width, epochs, width=width)
                stacked = time.perf_counter() - start
                rows.append({"precision": precision, "alone_ms": 1e3 * lone / steps,
                             "stacked_ms": 1e3 * stacked / (steps * width),
                             "load": os.getloadavg()[0]})
    finally:
        torch.set_num_threads(before)
    return rows


def describe(row: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row["params"].items())
    steps = ", ".join(f"{w}: {ms:.2f}" for w, ms in row["step_ms"] or ())
    return (f"{row['precision']}: {row['wall_s']:.1f} s wall, stacks of {row['width']} (step ms "
            f"a trial by width {steps}), best "
            f"trial {row['trial']} ({params}): val_loss {row['val_loss']:.4f}, test_accuracy "
            f"{row['test_accuracy']:.4f}; load {row['load_before'][0]:.2f} -> "
            f"{row['load_after'][0]:.2f}")


def summary(sweeps: list[dict[str, Any]], again: list[dict[str, Any]]) -> dict[str, Any]:
    by = {p: [s for s in sweeps if s["precision"] == p] for p in PRECISIONS}
    wall = {p: statistics.median(s["wall_s"] for s in rows) for p, rows in by.items()}
    rounds = [a["wall_s"] / b["wall_s"] for a, b in zip(by["fp32"], by["bf16"], strict=True)]
    accuracy = {p: [s["test_accuracy"] for s in rows] for p, rows in by.items()}
    lone = {p: [r for r in again if r["precision"] == p] for p in PRECISIONS}
    lone_s = {p: statistics.median(r["seconds"] for r in rows) for p, rows in lone.items()}
    return {"median_wall_s": wall, "fp32_over_bf16_median": wall["fp32"] / wall["bf16"],
            "fp32_over_bf16_rounds": rounds, "test_accuracy": accuracy,
            "bf16_minus_fp32_test_accuracy": [b - a for a, b in zip(accuracy["fp32"],
                                                                    accuracy["bf16"])],
            "alone": again, "alone_median_s": lone_s,
            "alone_fp32_over_bf16": lone_s["fp32"] / lone_s["bf16"],
            "alone_test_accuracy": {p: sorted({r["test_accuracy"] for r in rows})
                                    for p, rows in lone.items()}}


def step_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median step costs per precision, and their ratios fp32 / bf16."""
    median = {p: {k: statistics.median(r[k] for r in rows if r["precision"] == p)
                  for k in ("alone_ms", "stacked_ms")} for p in PRECISIONS}
    return {"step_ms": rows, "median_step_ms": median,
            "step_fp32_over_bf16": {k: median["fp32"][k] / median["bf16"][k]
                                    for k in ("alone_ms", "stacked_ms")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.precision",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of fp32 then bf16 (default: 2)")
    p.add_argument("--n-trials", type=int, help="trials per sweep (default: the product's)")
    p.add_argument("--stack", type=int, default=25,
                   help="rows of the stack whose step is timed (default: 25)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"JSON results file (default: {DEFAULT_OUT.relative_to(REPO)})")
    args = p.parse_args(argv)
    machine = cpu()
    print(f"{machine['cores']} cores, {machine['name']}, AMX bf16 {machine['amx_bf16']}, "
          f"AVX-512 bf16 {machine['avx512_bf16']}; load {os.getloadavg()}", flush=True)
    sweeps = []
    with tempfile.TemporaryDirectory(prefix="lrsweep-precision-") as tmp:
        warm_up(Path(tmp))
        for round_ in range(args.rounds):
            for precision in PRECISIONS:
                folder = Path(tmp) / f"{round_}-{precision}"
                folder.mkdir()
                sweeps.append(sweep(precision, folder, args.n_trials))
                print(describe(sweeps[-1]), flush=True)
    again = alone(next(s for s in sweeps if s["precision"] == "fp32")["params"], args.rounds)
    for row in again:
        print(f"the first fp32 sweep's best configuration alone at {row['precision']}: "
              f"test_accuracy {row['test_accuracy']:.4f}, {row['seconds']:.1f} s; load "
              f"{row['load']:.2f}", flush=True)
    result = summary(sweeps, again)
    print(f"alone, fp32 / bf16 of the median seconds: {result['alone_fp32_over_bf16']:.2f}x",
          flush=True)
    costs = step_summary(step_costs(args.rounds, args.stack))
    for row in costs["step_ms"]:
        print(f"step of a trial at {row['precision']}, one thread: alone {row['alone_ms']:.2f} "
              f"ms, in a stack of {args.stack} {row['stacked_ms']:.2f} ms; load "
              f"{row['load']:.2f}", flush=True)
    ratio = costs["step_fp32_over_bf16"]
    print(f"step fp32 / bf16 (medians): alone {ratio['alone_ms']:.2f}x, stacked "
          f"{ratio['stacked_ms']:.2f}x", flush=True)
    result.update(costs)
    print(f"wall time fp32 / bf16: median {result['fp32_over_bf16_median']:.2f}x, rounds "
          + ", ".join(f"{r:.2f}x" for r in result["fp32_over_bf16_rounds"])
          + "; best trial's test accuracy bf16 - fp32: "
          + ", ".join(f"{d:+.4f}" for d in result["bf16_minus_fp32_test_accuracy"]))
    write_json(args.out, {"machine": machine, "sweeps": sweeps, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
