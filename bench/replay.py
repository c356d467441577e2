"""A finished product study as a replay file: each counted trial's Optuna params, final state
and epochs run, so the careful baseline can run exactly the same trials."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Replay", "ReplayTrial", "extract"]


@dataclass(frozen=True)
class ReplayTrial:
    number: int  # the product trial's number
    params: dict[str, Any]  # Optuna params, named as the product's search space names them
    state: str  # COMPLETE, PRUNED or FAIL
    epochs_run: int  # epochs whose statistics the product recorded
    value: float | None  # the product's final loss, for COMPLETE trials


@dataclass(frozen=True)
class Replay:
    epochs: int  # epochs per trial of the study (schedule lengths depend on it)
    trials: list[ReplayTrial]  # in the order the product ran them

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Replay:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(int(raw["epochs"]), [ReplayTrial(**t) for t in raw["trials"]])


def extract(storage: str, study_name: str) -> Replay:
    """The counted trials of the product study ``study_name`` in ``storage``."""
    import optuna

    from sweeps.storage.backends import open_storage
    from sweeps.study.results import SETTINGS_ATTR, counted_trials

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    epochs = int(study.user_attrs[SETTINGS_ATTR]["epochs"])
    trials = [
        ReplayTrial(t.number, dict(t.params), t.state.name,
                    int(t.user_attrs.get("epochs_run", 0)), t.value)
        for t in sorted(counted_trials(study), key=lambda t: t.number)
    ]
    return Replay(epochs, trials)
