"""Reliability and scale-out (issue 5): real ``sweeps.run`` processes killed, raced and
starved of their servers, storage and disk; every check reads the real Optuna storage and
the real MLflow store back."""
