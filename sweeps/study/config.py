"""The settings of a sweep: defaults < TOML file (``--config``) < command line.

Every field is validated here, at the boundary; bad values raise ``UsageError`` naming the
field, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sweeps import checks
from sweeps.errors import UsageError
from sweeps.optim.optimizers import OPTIMIZERS
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.storage.backends import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, redact
from sweeps.study.goals import parse_constraint
from sweeps.study.metric import DIRECTIONS, READ_AT
from sweeps.study.pruners import DEFAULT_PRUNER, PRUNERS
from sweeps.study.samplers import DEFAULT_SAMPLER, SAMPLERS

__all__ = ["SweepConfig", "coerce", "field_names", "load_toml", "parse_kv", "split_names"]

LR_RANGES = ("fixed", "auto")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")  # \Z: no trailing newline
NAME_RULE = "use 1-100 letters, digits, '_', '.', '-', starting with a letter or digit"


@dataclass(frozen=True)
class SweepConfig:
    objective: str = "rebalance"  # registered name or pkg.module:attr
    objective_args: dict[str, str] = field(default_factory=dict)  # objective arguments
    study: str | None = None  # study name; default: derived from the objective
    n_trials: int = 50  # target number of finished trials of the study
    epochs: int | None = None  # epochs per trial; default: the objective's
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)  # optimizers searched
    schedulers: tuple[str, ...] = tuple(SCHEDULERS)  # schedulers searched
    lr_min: float | None = None  # lower lr bound for every optimizer; default per optimizer
    lr_max: float | None = None  # upper lr bound for every optimizer; default per optimizer
    # lr intervals: fixed (the objective's declared ones, else the defaults), auto (centred on
    # an LR range test per optimizer); None: the objective's, else auto. lr_min/lr_max win
    # over all of them.
    lr_range: str | None = None
    sampler: str = DEFAULT_SAMPLER  # a name of SAMPLERS
    pruner: str = DEFAULT_PRUNER  # a name of PRUNERS
    prune_stalled: bool = True  # stop a trial stalled since its start (after a tenth)
    seed: int = 0  # sampler seed
    weight_decay: float | None = None  # every trial's weight decay (AdamW's: not searched)
    weight_decay_range: tuple[float, float] | None = None  # weight decay searched (log) in
    # [low, high] for every trial, instead of a fixed one
    grad_clip: float | None = None  # every trial's gradient scaled down to this norm
    adam_beta1: float | None = None  # the Adam family's betas and eps; default: torch's
    adam_beta2: float | None = None
    adam_eps: float | None = None
    storage: str = DEFAULT_STORAGE  # Optuna storage (sqlite, postgresql, journal)
    tracking_uri: str = DEFAULT_TRACKING_URI  # MLflow tracking URI
    tracking_db: str | None = None  # the tracking server's database: metrics written directly
    experiment: str | None = None  # MLflow experiment; default: the study name
    log_every: int = 1  # log every Nth epoch's metrics to MLflow
    workers: int = 1  # worker processes on this machine
    threads: int | None = None  # torch intra-op threads of each worker process; default:
    # OMP_NUM_THREADS where set, else the cores divided by workers (sweeps.parallel.threads)
    batch: int = 25  # trials run together (in lockstep, as stacks of a measured width)
    # (sweeps.batched.sizing); 1: one at a time
    device: str = "auto"  # auto, cpu, cuda (with several GPUs, --workers spread over them)
    # or cuda:K
    precision: str = "fp32"  # fp32, or bf16 or fp16: a mini-batch objective's forward pass
    # under torch.autocast (sweeps.training.precision)
    timeout: float | None = None  # stop starting new trials after this many seconds
    export: str | None = None  # write the best trial's JSON here at the end
    quiet: bool = False  # no progress display
    plots: bool = True  # log the sweep's plots (PNG) to the parent run at the end
    per_tensor: bool = True  # log grad_abs_mean/<tensor> and update_ratio/<tensor> per epoch
    log_steps: bool = False  # mini-batch objectives: log step_loss and step_lr of every step
    # metrics optimised (several: a Pareto front, sweeps.study.goals); default: val_loss if
    # reported, else loss
    metric: tuple[str, ...] | None = None
    direction: tuple[str, ...] | None = None  # minimize or maximize, one per metric; default:
    # by the metric's name
    constraints: tuple[str, ...] = ()  # METRIC<=NUMBER or METRIC>=NUMBER a trial must keep
    metric_at: str = "last"  # a trial's value: the metric at its last or its best epoch

    @property
    def study_name(self) -> str:
        return self.study or re.sub(r"[^A-Za-z0-9_.-]+", "-", self.objective).strip("-.")

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.study_name

    def validated(self) -> SweepConfig:
        """This config, or ``UsageError`` for the first bad field."""
        checks.names("optimizers", self.optimizers, OPTIMIZERS)
        checks.names("schedulers", self.schedulers, SCHEDULERS)
        checks.choice("sampler", self.sampler, SAMPLERS)
        checks.choice("pruner", self.pruner, PRUNERS)
        checks.check_device(self.device)
        checks.choice("precision", self.precision, checks.PRECISIONS)
        if self.lr_range is not None:
            checks.choice("lr-range", self.lr_range, LR_RANGES)
        if self.direction is not None:
            checks.names("direction", self.direction, DIRECTIONS)
        for text in self.constraints:
            parse_constraint(text)
        checks.choice("metric-at", self.metric_at, READ_AT)
        if self.lr_range == "auto" and (self.lr_min or self.lr_max):
            raise UsageError("lr-range", self.lr_range, "use fixed with --lr-min/--lr-max")
        checks.at_least("n-trials", self.n_trials, 1)
        checks.at_least("log-every", self.log_every, 1)
        checks.at_least("workers", self.workers, 1)
        if self.threads is not None:
            checks.at_least("threads", self.threads, 1)
        checks.at_least("batch", self.batch, 1)
        if self.epochs is not None:
            checks.at_least("epochs", self.epochs, 1)
        for name in ("lr_min", "lr_max"):
            value = getattr(self, name)
            if value is not None:
                checks.positive(name.replace("_", "-"), value)
        if self.weight_decay is not None and not (
                not isinstance(self.weight_decay, bool) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise UsageError("weight-decay", self.weight_decay, "use a finite number >= 0")
        if self.weight_decay_range is not None:
            _check_range(self)
        if self.grad_clip is not None:
            checks.positive("grad-clip", self.grad_clip)
        for name in ("adam_beta1", "adam_beta2"):
            beta = getattr(self, name)
            if beta is not None and not (not isinstance(beta, bool) and 0 <= beta < 1):
                raise UsageError(name.replace("_", "-"), beta, "use a number from 0 to below 1")
        if self.adam_eps is not None:
            checks.positive("adam-eps", self.adam_eps)
        if self.lr_min and self.lr_max and self.lr_min >= self.lr_max:
            raise UsageError("lr-min", self.lr_min, f"use a value below lr-max ({self.lr_max})")
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise UsageError("seed", self.seed, "use an integer from 0 to 2**32 - 1")
        if self.export is not None:
            checks.writable_file("export", self.export)
        if self.timeout is not None and not self.timeout > 0:
            raise UsageError("timeout", self.timeout, "use a number of seconds > 0")
        if self.tracking_db is not None and not self.tracking_uri.startswith(("http://",
                                                                              "https://")):
            raise UsageError("tracking-db", redact(self.tracking_db),
                             "use it with an http(s) --tracking-uri (a database tracking URI "
                             "is written directly already)")
        for label, given in (("study", self.study), ("experiment", self.experiment)):
            if given is not None and not NAME_PATTERN.match(given):
                raise UsageError(label, given, NAME_RULE)
        if not NAME_PATTERN.match(self.study_name):
            raise UsageError("study", self.study_name, NAME_RULE)
        return self

    def with_overrides(self, values: dict[str, Any]) -> SweepConfig:
        return replace(self, **values)


def _check_range(config: SweepConfig) -> None:
    """``weight_decay_range``: two finite numbers, 0 < low < high, not beside a fixed weight
    decay, and not with the grid sampler (whose points are optimizer, scheduler and lr)."""
    given = ",".join(f"{v:g}" for v in config.weight_decay_range or ())
    values = config.weight_decay_range or ()
    if len(values) != 2 or not all(math.isfinite(v) for v in values) \
            or not 0 < values[0] < values[1]:
        raise UsageError("weight-decay-range", given, "use LOW,HIGH with 0 < LOW < HIGH")
    if config.weight_decay is not None:
        raise UsageError("weight-decay-range", given,
                         "give a fixed --weight-decay or a range, not both")
    if config.sampler == "grid":
        raise UsageError("weight-decay-range", given, "use a sampler other than grid")


def field_names() -> list[str]:
    """The keys a config file may hold."""
    return [f.name for f in fields(SweepConfig)]


def load_toml(path: str) -> dict[str, Any]:
    """Keys of a TOML config file, checked against ``SweepConfig``'s fields and types."""
    text = checks.readable_text("config", path, "TOML")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError("config", path, f"use valid TOML ({exc})") from None
    known = {f.name: f for f in fields(SweepConfig)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UsageError("config key", key, f"use one of {', '.join(known)}")
        out[name] = coerce(name, value, f"config key {name}")
    return out


def coerce(name: str, value: Any, label: str) -> Any:
    """A setting's value (from TOML or Python) as the field's type (lists for the name tuples,
    tables for args); ``UsageError`` naming ``label`` where it has another type."""
    if name in ("optimizers", "schedulers", "metric", "direction", "constraints"):
        if isinstance(value, str):
            return split_names(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise UsageError(label, value, "use a list of names or a comma-separated string")
    if name == "weight_decay_range":
        return _floats(value, label)
    if name == "objective_args":
        if not isinstance(value, dict):
            raise UsageError(label, value, "use a table of key = value")
        return {str(k): str(v) for k, v in value.items()}
    kinds: dict[str, tuple[type, ...]] = {
        "n_trials": (int,), "epochs": (int,), "seed": (int,), "log_every": (int,),
        "workers": (int,), "threads": (int,), "batch": (int,), "lr_min": (int, float),
        "lr_max": (int, float), "timeout": (int, float), "weight_decay": (int, float),
        "grad_clip": (int, float), "adam_beta1": (int, float), "adam_beta2": (int, float),
        "adam_eps": (int, float), "quiet": (bool,), "plots": (bool,),
        "prune_stalled": (bool,), "per_tensor": (bool,), "log_steps": (bool,),
    }
    allowed = kinds.get(name, (str,))
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise UsageError(label, value, f"use a value of type {names}")
    if float not in allowed:
        return value
    try:
        return float(value)  # type: ignore[arg-type]  # int or float, checked above
    except OverflowError:
        raise UsageError(label, value, "use a number within the float range") from None


def _floats(value: Any, label: str) -> tuple[float, ...]:
    """Numbers from a list of them or a comma-separated string (``UsageError`` naming
    ``label`` otherwise); their count and range are checked with the config."""
    parts = split_names(value) if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or any(isinstance(v, bool) for v in parts):
        raise UsageError(label, value, "use two numbers LOW,HIGH")
    try:
        return tuple(float(v) for v in parts)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(label, value, "use two numbers LOW,HIGH") from None


def split_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_kv(items: list[str], label: str = "objective-arg") -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a malformed item is a ``UsageError``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(label, item, "use KEY=VALUE")
        out[key.strip()] = value.strip()
    return out
