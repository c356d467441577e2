"""lrsweep's sweeps: one subpackage per concept (``training``, ``optim``, ``batched``,
``diagnostics``, ``study``, ``storage``, ``parallel``, ``cli``); ``python -m sweeps.<command>``
runs a command. Nothing is imported here, so a command starts fast."""
