"""Why parameters don't move: per-tensor probes, the LR range test, stalled-trial watch."""
