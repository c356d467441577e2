"""Sweep throughput: the product's tracked sweep against the careful user's loop on the same
trials and the same store kind (fresh SQLite files for Optuna and MLflow on both sides).

All sweeps run as subprocesses and are timed start to exit (imports and store creation
included on every side). Three rows:

- the default sweep (``--batch`` at its default) against the careful loop replaying its trials
  (``bench.baseline_careful``; see there why a replay and not the same sampler seed): the two
  do the same epochs of the same configurations;
- machinery: the same parameter sets, enqueued in the same order, swept at ``--batch 1`` (one
  trial at a time, as the careful loop runs them) against the careful loop replaying that
  sweep's trials: the same work again, and the ratio is what the product's machinery gives
  without batching;
- batching: the default sweep against the ``--batch 1`` sweep of the same parameter sets.
  Trials of a batch are asked for pruning before any of them has finished, so the pruner
  (which compares a trial with finished ones) prunes fewer of the first batch's trials than
  one-at-a-time trials: the two sweeps can differ in trial-epochs, and the row's note says by
  how much. The ratio is what a user waits for the same parameter sets in either mode.

When the ``--batch 1`` sweep ran exactly the default sweep's trials (same states and epochs),
the careful run already made serves for both rows; otherwise the careful loop runs a second
time, on the ``--batch 1`` sweep's trials.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .context import Context
from .procs import CommandRun
from .replay import Replay, extract
from .report import Bar, Row

__all__ = ["measure"]


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    from sweeps.study.config import SweepConfig

    n, epochs = ctx.sizes.sweep_trials, ctx.sizes.sweep_epochs
    _check_cadence(epochs)
    default_batch = SweepConfig().batch
    product = ctx.product_sweep(n, epochs)
    replay = extract(product.storage, product.study)
    one = ctx.product_sweep(n, epochs, batch=1, trials=tuple(t.params for t in replay.trials))
    replay_one = extract(one.storage, one.study)
    careful, same = _careful(ctx, replay, "careful")
    ctx.careful_run = careful
    same_params = [t.params for t in replay.trials] == [t.params for t in replay_one.trials]
    same_work = same_params and _work(replay) == _work(replay_one)
    if same_work:
        careful_one, same_one = careful, same
    else:
        careful_one, same_one = _careful(ctx, replay_one, "careful-batch1")

    epochs_total, epochs_one = _trial_epochs(replay), _trial_epochs(replay_one)
    speedup = careful.wall_s / product.run.wall_s
    machinery = careful_one.wall_s / one.run.wall_s
    batching = one.run.wall_s / product.run.wall_s
    per_epoch = _us(one.run.wall_s, epochs_one) / _us(product.run.wall_s, epochs_total)
    rows = [
        Row(f"sweep throughput: {n} trials x {epochs:,} epochs, every epoch tracked",
            product.run.wall_s, careful.wall_s, "s", speedup, Bar(">=", 10.0),
            f"careful user's loop wall time / product wall time (--batch {default_batch}); "
            f"same {len(replay.trials)} trials ({epochs_total:,} trial-epochs), same trials "
            f"matched: {same['same_states_and_epochs']}"),
        Row("  machinery: the same parameter sets at --batch 1 vs the careful loop",
            one.run.wall_s, careful_one.wall_s, "s", machinery, None,
            f"careful loop replaying the --batch 1 sweep / --batch 1 wall time; same "
            f"{len(replay_one.trials)} trials ({epochs_one:,} trial-epochs), same trials "
            f"matched: {same_one['same_states_and_epochs']}"),
        Row(f"  batching: --batch {default_batch} vs --batch 1, the same parameter sets",
            product.run.wall_s, one.run.wall_s, "s", batching, None,
            f"--batch 1 wall time / --batch {default_batch} wall time; trial-epochs "
            f"{epochs_total:,} vs {epochs_one:,}"
            + ("" if same_work else
               f" (pruning differs: see the section's docstring); per trial-epoch, start-up"
               f" included: {per_epoch:.2f}x")),
    ]
    details = {
        "n_trials": n, "epochs": epochs, "default_batch": default_batch,
        "product_wall_s": product.run.wall_s, "careful_wall_s": careful.wall_s,
        "speedup": speedup, "trial_epochs": epochs_total,
        "product_us_per_trial_epoch": _us(product.run.wall_s, epochs_total),
        "careful_us_per_trial_epoch": _us(careful.wall_s, epochs_total),
        "states": dict(Counter(t.state for t in replay.trials)),
        "comparison": same,
        "product_command": " ".join(product.run.argv),
        "careful_command": " ".join(careful.argv),
        "batch1": {
            "wall_s": one.run.wall_s, "trial_epochs": epochs_one,
            "us_per_trial_epoch": _us(one.run.wall_s, epochs_one),
            "states": dict(Counter(t.state for t in replay_one.trials)),
            "same_params_in_order": same_params,
            "same_work_as_default": same_work,
            "careful_rerun": not same_work,
            "careful_wall_s": careful_one.wall_s,
            "careful_us_per_trial_epoch": _us(careful_one.wall_s, epochs_one),
            "comparison": same_one,
            "machinery_speedup": machinery,
            "batching_speedup": batching,
            "batching_speedup_per_trial_epoch": per_epoch,
            "command": " ".join(one.run.argv),
            "careful_command": " ".join(careful_one.argv),
        },
    }
    return rows, details


def _check_cadence(epochs: int) -> None:
    """The careful loop mirrors when the product reports to Optuna and asks its pruner."""
    from sweeps.study.reporter import PRUNE_CHECKS
    from sweeps.training.loop import default_chunk

    from . import baseline_careful as careful

    if (careful.PRUNE_CHECKS != PRUNE_CHECKS
            or careful.chunk_epochs(epochs) != default_chunk(epochs)):
        raise RuntimeError("bench.baseline_careful's reporting cadence no longer mirrors the "
                           "product's (PRUNE_CHECKS, default_chunk): update the mirror")


def _careful(ctx: Context, replay: Replay, name: str) -> tuple[CommandRun, dict[str, Any]]:
    """Run the careful loop on ``replay`` in fresh stores; its run and how it matched."""
    where = ctx.fresh_dir(name)
    replay_file = where / "replay.json"
    replay.save(replay_file)
    storage = f"sqlite:///{where}/optuna.db"
    run = ctx.run(ctx.python("-m", "bench.baseline_careful", "--replay", str(replay_file),
                             "--storage", storage,
                             "--tracking-uri", f"sqlite:///{where}/mlflow.db"),
                  where).check()
    return run, _compare(replay, storage)


def _work(replay: Replay) -> list[tuple[str, int]]:
    return [(t.state, t.epochs_run) for t in replay.trials]


def _trial_epochs(replay: Replay) -> int:
    return sum(t.epochs_run for t in replay.trials)


def _us(wall_s: float, trial_epochs: int) -> float:
    """Microseconds of wall time per trial-epoch (start-up included)."""
    return wall_s / max(1, trial_epochs) * 1e6


def _compare(replay: Replay, storage: str) -> dict[str, Any]:
    """Did the baseline run the product's trials: same params, states, epochs and values?
    And how often did it ask the pruner."""
    import optuna

    from .baseline_careful import QUESTIONS_ATTR

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
            "max_rel_diff_final_loss": max(diffs, default=None),
            "pruning_questions": study.user_attrs.get(QUESTIONS_ATTR)}
