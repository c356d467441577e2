"""Does ``--prune-stalled`` save time without losing the best region?

    python -m bench.stall                 # 5 seeds x {off, on}, default sweeps
    python -m bench.stall --seeds 2 --n-trials 20

For each seed, the default sweep (50 trials x 10,000 epochs, median pruner) with and without
stalled-trial pruning: wall time, epochs run over all trials, trials stopped as stalled, the
best final loss (clamped at the loss's float64 noise floor, see ``bench.lr_range``) and the
best trial's optimizer. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .lr_range import FLOOR
from .report import write_json

MODES = {"off": ["--no-prune-stalled"], "on": ["--prune-stalled"]}


def run_mode(folder: Path, mode: str, seed: int, n_trials: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = f"{mode}-{seed}"
    storage = f"sqlite:///{folder}/optuna.db"
    command = [sys.executable, "-m", "sweeps.run", "--study", study, "--seed", str(seed),
               "--n-trials", str(n_trials), "--storage", storage, *MODES[mode],
               "--tracking-uri", f"sqlite:///{folder}/mlflow.db", "--quiet", "--no-plots"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=folder)
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name=study, storage=storage).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: math.inf if t.value is None else t.value)
    assert best.value is not None
    return {"mode": mode, "seed": seed, "wall_s": wall,
            "epochs_run": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
            "stopped_stalled": sum(t.user_attrs.get("pruned_by") == "stalled" for t in trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "best_floored": max(best.value, FLOOR), "best": best.value,
            "best_optimizer": best.params["optimizer"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.stall", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-trials", type=int, default=50)
    p.add_argument("--out", default="bench/results/stall.json")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for mode in MODES:
                r = run_mode(Path(tmp), mode, seed, args.n_trials)
                rows.append(r)
                print(f"seed {seed} {mode:>3}: {r['wall_s']:.1f} s, {r['epochs_run']:,} epochs, "
                      f"{r['stopped_stalled']} stopped stalled, {r['pruned']} pruned in all, "
                      f"best {r['best']:.3g} ({r['best_optimizer']})", flush=True)
    summary = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        summary[mode] = {key: statistics.median(r[key] for r in mine)
                         for key in ("wall_s", "epochs_run", "stopped_stalled", "best_floored")}
        summary[mode]["seeds_at_floor"] = sum(r["best_floored"] <= FLOOR for r in mine)
    for mode, s in summary.items():
        print(f"{mode:>3}: median {s['wall_s']:.1f} s, {s['epochs_run']:,.0f} epochs, "
              f"{s['stopped_stalled']} stopped stalled; best at the {FLOOR:g} floor in "
              f"{s['seeds_at_floor']} of {args.seeds} seeds")
    write_json(args.out, {"rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
