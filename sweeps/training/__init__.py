"""One training run: the loop, its per-epoch statistics, hyperparameters and verdicts."""
