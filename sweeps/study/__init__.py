"""The Optuna study: settings, search space, the sweep's ask/tell, results."""
