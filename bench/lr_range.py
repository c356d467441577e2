"""Does ``--lr-range auto`` find good trials sooner than the fixed wide intervals?

    python -m bench.lr_range                 # 5 seeds x {fixed, auto}, 50 trials each
    python -m bench.lr_range --seeds 2 --n-trials 20 --epochs 2000

For each seed and mode, a default sweep of the rebalance objective; the figure is the number
of trials until the best final loss is within 10x of the study's final best (and of the best
either mode reached for that seed). Prints a table and writes JSON.

The rebalance loss has a float64 floor: its initial value is 2.4e-3 and its resolution about
that times eps^2 (~1e-34), so final losses of 1e-34..1e-38 (and exact zeros) are rounding
noise, and "within 10x of the final best" of a study whose best is such noise means
"matched the noise". The figure is therefore also given with losses clamped at ``FLOOR``
(100x that resolution): there "within 10x" means "reached the floor", a stable target.
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

from .report import write_json

FLOOR = 1e-32  # below: float64 rounding noise of the rebalance loss (see the docstring)


def trials_to_within(values: list[float], target: float, factor: float = 10.0) -> int | None:
    """1-based count of trials until the best-so-far is within ``factor`` of ``target``."""
    best = math.inf
    for i, value in enumerate(values, start=1):
        best = min(best, value)
        if best <= target * factor:
            return i
    return None


def completed_values(storage: str, study: str) -> list[float]:
    """Final losses in trial order (inf for trials that did not complete)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=study, storage=storage)
    out = []
    for t in sorted(s.trials, key=lambda t: t.number):
        if t.user_attrs.get("interrupted") == "surplus":
            continue
        complete = t.state == optuna.trial.TrialState.COMPLETE
        out.append(t.value if complete and t.value is not None else math.inf)
    return out


def run_mode(folder: Path, mode: str, seed: int, n_trials: int, epochs: int | None) -> dict:
    study = f"{mode}-{seed}"
    storage = f"sqlite:///{folder}/optuna.db"
    command = [sys.executable, "-m", "sweeps.run", "--study", study, "--seed", str(seed),
               "--n-trials", str(n_trials), "--lr-range", mode, "--storage", storage,
               "--tracking-uri", f"sqlite:///{folder}/mlflow.db", "--quiet", "--no-plots"]
    if epochs:
        command += ["--epochs", str(epochs)]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=folder)
    values = completed_values(storage, study)
    return {"mode": mode, "seed": seed, "wall_s": time.perf_counter() - start,
            "values": values, "final_best": min(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.lr_range", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-trials", type=int, default=50)
    p.add_argument("--epochs", type=int)
    p.add_argument("--out", default="bench/results/lr_range.json")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            pair = {mode: run_mode(Path(tmp), mode, seed, args.n_trials, args.epochs)
                    for mode in ("fixed", "auto")}
            overall = min(r["final_best"] for r in pair.values())
            for r in pair.values():
                r["to_own_best"] = trials_to_within(r["values"], r["final_best"])
                r["to_overall_best"] = trials_to_within(r["values"], overall)
                clamped = [max(v, FLOOR) for v in r["values"]]
                r["to_own_best_floored"] = trials_to_within(clamped, min(clamped))
                rows.append(r)
                print(f"seed {seed} {r['mode']:>5}: best {r['final_best']:.3g}, "
                      f"trials to 10x own best {r['to_own_best']} (floored at {FLOOR:g}: "
                      f"{r['to_own_best_floored']}), to 10x best of both "
                      f"{r['to_overall_best']}, {r['wall_s']:.0f} s", flush=True)
    summary = {}
    for mode in ("fixed", "auto"):
        mine = [r for r in rows if r["mode"] == mode]
        summary[mode] = {
            "median_trials_to_10x_own_best": statistics.median(r["to_own_best"] for r in mine),
            "median_trials_to_10x_best_of_both": statistics.median(
                r["to_overall_best"] if r["to_overall_best"] else args.n_trials + 1
                for r in mine),
            "median_trials_to_10x_own_best_floored": statistics.median(
                r["to_own_best_floored"] for r in mine),
            "median_final_best": statistics.median(r["final_best"] for r in mine),
        }
    for mode, s in summary.items():
        print(f"{mode:>5}: median trials to 10x own best {s['median_trials_to_10x_own_best']}"
              f" (floored at {FLOOR:g}: {s['median_trials_to_10x_own_best_floored']}), "
              f"to 10x best of both {s['median_trials_to_10x_best_of_both']}, "
              f"median final best {s['median_final_best']:.3g}")
    write_json(args.out, {"rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
