"""Sweep throughput: the product's tracked sweep against the careful user's loop on the same
trials and the same store kind (fresh SQLite files for Optuna and MLflow on both sides).

Both run as subprocesses and are timed start to exit (imports and store creation included on
both sides). The product runs first; its finished study is replayed by
``bench.baseline_careful`` (see there why a replay and not the same sampler seed).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .context import Context
from .replay import Replay, extract
from .report import Bar, Row

__all__ = ["measure"]


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    n, epochs = ctx.sizes.sweep_trials, ctx.sizes.sweep_epochs
    product = ctx.product_sweep(n, epochs)
    replay = extract(product.storage, product.study)
    where = ctx.fresh_dir("careful")
    replay_file = where / "replay.json"
    replay.save(replay_file)
    storage = f"sqlite:///{where}/optuna.db"
    careful = ctx.run(ctx.python("-m", "bench.baseline_careful", "--replay", str(replay_file),
                                 "--storage", storage,
                                 "--tracking-uri", f"sqlite:///{where}/mlflow.db"),
                      where).check()
    ctx.careful_run = careful
    same = _compare(replay, storage)
    speedup = careful.wall_s / product.run.wall_s
    epochs_total = sum(t.epochs_run for t in replay.trials)
    rows = [Row(f"sweep throughput: {n} trials x {epochs:,} epochs, every epoch tracked",
                product.run.wall_s, careful.wall_s, "s", speedup, Bar(">=", 10.0),
                f"careful user's loop wall time / product wall time; same {len(replay.trials)}"
                f" trials ({epochs_total:,} trial-epochs), same trials matched: "
                f"{same['same_states_and_epochs']}")]
    details = {
        "n_trials": n, "epochs": epochs, "product_wall_s": product.run.wall_s,
        "careful_wall_s": careful.wall_s, "speedup": speedup,
        "trial_epochs": epochs_total,
        "product_us_per_trial_epoch": product.run.wall_s / max(1, epochs_total) * 1e6,
        "careful_us_per_trial_epoch": careful.wall_s / max(1, epochs_total) * 1e6,
        "states": dict(Counter(t.state for t in replay.trials)),
        "comparison": same,
        "product_command": " ".join(product.run.argv),
        "careful_command": " ".join(careful.argv),
    }
    return rows, details


def _compare(replay: Replay, storage: str) -> dict[str, Any]:
    """Did the baseline run the product's trials: same params, states, epochs and values?"""
    import optuna

    study = optuna.load_study(study_name="careful", storage=storage)
    mine = sorted(study.trials, key=lambda t: t.number)
    mismatched = [
        p.number for p, c in zip(replay.trials, mine)
        if p.state != c.state.name or p.epochs_run != c.user_attrs.get("epochs_run")
        or any(c.params.get(k) != v for k, v in p.params.items())
    ]
    diffs = [abs(c.value - p.value) / max(abs(p.value), 1e-300)
             for p, c in zip(replay.trials, mine)
             if p.value is not None and c.value is not None and math.isfinite(c.value)]
    return {"same_states_and_epochs": len(mine) == len(replay.trials) and not mismatched,
            "mismatched_trials": mismatched,
            "max_rel_diff_final_loss": max(diffs, default=None)}
