"""The suite's result: one row per measurement (product beside baseline, their ratio, the bar
it must meet), the details of each section, and the circumstances of the run."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Bar", "Report", "Row", "write_json"]

Subject = Literal["ratio", "product"]
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}


@dataclass(frozen=True)
class Bar:
    """What a measurement must meet, e.g. ``ratio <= 1.3`` or ``product < 0.5``."""

    op: str  # "<=", ">=" or "<"
    limit: float  # the number compared against
    subject: Subject = "ratio"  # which number of the row is compared
    unit: str = "x"  # how to print the limit

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Bar operator must be one of {', '.join(_OPS)} but got {self.op!r}.")

    def met(self, value: float) -> bool:
        return math.isfinite(value) and bool(_OPS[self.op](value, self.limit))

    def __str__(self) -> str:
        unit = "x" if self.unit == "x" else f" {self.unit}"
        return f"{self.subject} {self.op} {self.limit:g}{unit}"


@dataclass(frozen=True)
class Row:
    measurement: str  # what was measured
    product: float | None  # the product's number (None: not measured)
    baseline: float | None  # the number it is compared with (None: none)
    unit: str  # unit of product and baseline
    ratio: float | None = None  # the ratio the bar is about (product/baseline or the reverse)
    bar: Bar | None = None  # what it must meet; None for numbers shown for comparison only
    note: str = ""  # one line: how the ratio reads, or why nothing was measured
    error: bool = False  # the measurement itself failed

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if self.bar is None:
            return "-"
        value = self.ratio if self.bar.subject == "ratio" else self.product
        if value is None:
            return "n/a"
        return "pass" if self.bar.met(value) else "FAIL"

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        return [self.measurement, _value(self.product, self.unit),
                _value(self.baseline, self.unit), ratio,
                "" if self.bar is None else str(self.bar), self.verdict]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bar"] = None if self.bar is None else str(self.bar)
        out["verdict"] = self.verdict
        return out


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # per section: raw timings etc.
    meta: dict[str, Any] = field(default_factory=dict)  # command, sizes, versions, machine

    HEADER = ("measurement", "product", "baseline", "ratio", "bar", "pass/fail")

    def table(self) -> str:
        """The rows as a plain-text table, with each row's note underneath."""
        cells = [list(self.HEADER), *(row.cells() for row in self.rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.HEADER))]
        lines = []
        for i, line in enumerate(cells):
            lines.append(" | ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
            if i == 0:
                lines.append("-+-".join("-" * w for w in widths))
        notes = [f"  [{i}] {row.measurement}: {row.note}"
                 for i, row in enumerate(self.rows, 1) if row.note]
        return "\n".join(lines + (["", "notes:", *notes] if notes else []))

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([row.to_dict() for row in self.rows])

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": [row.to_dict() for row in self.rows],
                "details": self.details}

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON at ``path`` (its folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if value == 0 or 0.01 <= abs(value) < 1e5:
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}"
