"""Optimizers and learning-rate schedulers by name, over ``torch.optim``."""
