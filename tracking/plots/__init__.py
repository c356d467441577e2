"""A sweep's plots as PNG files, one module per family:

- ``curves``: loss and update-ratio curves of the top trials against the epoch;
- ``tensors``: the best trial's update ratio per parameter tensor (objectives of several);
- ``trials``: final loss against learning rate, the optimisation history;
- ``importances``: the parameter importances;
- ``parallel``: the trials in parallel coordinates;
- ``pareto``: the Pareto front of a study of several metrics;
- ``range_test``: the LR range test's curve (``python -m sweeps.diagnose``, ``--lr-range auto``);
- ``sweep``: all of a sweep's plots into one folder; ``histories``: their data from MLflow.

Every plotting function is pure: it takes typed data and returns a ``matplotlib.figure.Figure``
built without ``pyplot`` (no global figure state, no GUI backend); ``save`` writes it. At the
end of a sweep::

    curves = histories_by_run(client, top_run_ids(study, k=5))
    write_sweep_plots(study, curves, {"seed: sgd lr=1e-2": seed_history}, out_dir, frame,
                      tensors=next(iter(curves.items())))
"""

from tracking.plots.curves import loss_curves, update_ratio_curves
from tracking.plots.figures import save
from tracking.plots.histories import (
    histories_by_run,
    histories_from_mlflow,
    tensor_histories,
    top_run_ids,
    trial_label,
)
from tracking.plots.importances import param_importances
from tracking.plots.parallel import parallel_coordinates
from tracking.plots.range_test import RangeCurve, plot_range_test
from tracking.plots.series import Curve, History, series, tensor_series
from tracking.plots.sweep import FILES, TENSOR_FILE, write_sweep_plots
from tracking.plots.tensors import tensor_update_ratios
from tracking.plots.trials import loss_vs_lr, optimization_history, optimizer_colors

__all__ = ["FILES", "TENSOR_FILE", "Curve", "History", "RangeCurve", "histories_by_run",
           "histories_from_mlflow", "loss_curves", "loss_vs_lr", "optimization_history",
           "optimizer_colors", "parallel_coordinates", "param_importances", "plot_range_test",
           "save", "series", "tensor_histories", "tensor_series", "tensor_update_ratios",
           "top_run_ids", "trial_label", "update_ratio_curves", "write_sweep_plots"]
