"""Sweeps: search space, optimizers, schedulers, training loop, Optuna study, CLIs."""
