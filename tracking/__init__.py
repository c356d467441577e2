"""Tracking: MLflow parent/child runs, batched metric logging, artifacts, the UI launcher."""
