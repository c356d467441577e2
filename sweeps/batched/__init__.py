"""Batched trials: several trials of one objective as one tensor program."""
