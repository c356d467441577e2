"""The command lines: one module per command (``run``, ``train``, ``export``, ``compare``,
``diagnose``) plus what they share (``common``: one-line errors, exit status 2). Each is
started as ``python -m sweeps.<command>``; this is the one layer that puts the study, MLflow
tracking, the progress display and the plots together."""
