"""Sweeps: search space, optimizer and scheduler construction, training loop, Optuna study, CLIs."""
