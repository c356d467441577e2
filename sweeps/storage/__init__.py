"""Where studies are stored: storage URLs and their defaults, password masking, SQLite
settings, and Optuna storages opened from a URL."""

from sweeps.storage.backends import (
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    WORKERS_STORAGE,
    absolute_uri,
    dispose_engine,
    local_path,
    open_storage,
    redact,
)

__all__ = ["DEFAULT_STORAGE", "DEFAULT_TRACKING_URI", "WORKERS_STORAGE", "absolute_uri",
           "dispose_engine", "local_path", "open_storage", "redact"]
