"""Start-up: ``python -m sweeps.run --help`` wall time (median of several runs), beside the
interpreter's own start (``python -c pass``)."""

from __future__ import annotations

import statistics
from typing import Any

from .context import Context
from .procs import wall_time
from .report import Bar, Row

__all__ = ["measure"]


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    where = ctx.fresh_dir("help")
    help_s, bare_s = [], []
    for _ in range(ctx.sizes.help_repeats):  # interleaved, like every paired timing here
        help_s.append(wall_time(ctx.python("-m", "sweeps.run", "--help"), cwd=where,
                                env=ctx.env))
        bare_s.append(wall_time(ctx.python("-c", "pass"), cwd=where, env=ctx.env))
    product, bare = statistics.median(help_s), statistics.median(bare_s)
    rows = [Row("sweeps.run --help wall time", product, bare, "s", product / bare,
                Bar("<", 0.5, "product", "s"),
                f"median of {len(help_s)}; baseline: python -c pass")]
    return rows, {"help_s": help_s, "python_c_pass_s": bare_s}
