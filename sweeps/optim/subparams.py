"""Sub-parameters of optimizers and schedulers (momentum, step size, ...): each one's default and
search range, in one typed entry that the builders, the batched path and the search space read.

Values that scale with the length of a run are given relative to its epochs (``Length``,
``Decay``) and resolved once the epochs are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Decay", "Length", "SubParam", "Value", "settings"]


@dataclass(frozen=True)
class Length:
    """A number of epochs that scales with the run: ``epochs // divisor``, at least 1."""

    divisor: int

    def at(self, epochs: int) -> int:
        return max(1, epochs // self.divisor)


@dataclass(frozen=True)
class Decay:
    """A per-epoch factor that multiplies the lr by ``total`` over the whole run."""

    total: float

    def at(self, epochs: int) -> float:
        return self.total ** (1 / max(1, epochs))


Value = float | Length | Decay  # a constant, or a value relative to the run's epochs


@dataclass(frozen=True)
class SubParam:
    """One sub-parameter: its name, its default and the range the search samples."""

    name: str  # key in Hyperparams.options and Optuna's parameter name
    default: Value  # used when a run does not set it
    low: Value  # lowest value searched
    high: Value  # highest value searched
    log: bool = False  # searched on a log scale
    integer: bool = False  # a whole number (a count of epochs)

    def default_for(self, epochs: int | None) -> float:
        """The default for a run of ``epochs`` (None: only a constant default resolves)."""
        return self._resolve(self.default, epochs)

    def bounds(self, epochs: int) -> tuple[float, float]:
        """The search range for a run of ``epochs``, both ends included."""
        return self._resolve(self.low, epochs), self._resolve(self.high, epochs)

    def _resolve(self, value: Value, epochs: int | None) -> float:
        if isinstance(value, (Length, Decay)):
            if epochs is None:
                raise ValueError(f"{self.name} scales with the run's epochs, but none were given.")
            return value.at(epochs)
        return value


def settings(params: Iterable[SubParam], options: Mapping[str, float],
             epochs: int | None = None) -> dict[str, float]:
    """Each of ``params``: its value in ``options``, else its default for a run of ``epochs``."""
    return {p.name: options[p.name] if p.name in options else p.default_for(epochs)
            for p in params}
