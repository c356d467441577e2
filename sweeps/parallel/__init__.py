"""Several processes on one study: ``--workers`` helpers and signal handling."""
