"""Verdicts: why a run went the way it did, from its per-epoch statistics alone.

``judge`` (``judge``) applies the whole-run rules in order (``rules``: diverged, stalled,
unstable, flat, memorizing, overfitting, slow), falls back to healthy, and adds what the
per-tensor gradients say (``tensors``: layer faults, stalled tensors). ``Thresholds`` says when
each applies; ``NOT_THE_LR`` names the verdicts whose cause is not the learning rate; the
update-ratio rule (``ratio_rule``) scales an lr to a target update ratio. Nothing here imports
torch. On the seed case (SGD at lr 0.01 on ``rebalance``) ``judge(result.history)`` is::

    Verdict(name='stalled', reason='parameters move 4.8e-09 of their size per step
            (update ratio); try ~2e+05x larger lr')
"""

from sweeps.training.verdicts.judge import judge
from sweeps.training.verdicts.ratio_rule import ratio_factor, ratio_rule
from sweeps.training.verdicts.rules import RULES
from sweeps.training.verdicts.tensors import LayerFault, layer_faults, stalled_tensors
from sweeps.training.verdicts.thresholds import Thresholds
from sweeps.training.verdicts.verdict import NOT_THE_LR, VERDICTS, Verdict

__all__ = ["NOT_THE_LR", "RULES", "VERDICTS", "LayerFault", "Thresholds", "Verdict", "judge",
           "layer_faults", "ratio_factor", "ratio_rule", "stalled_tensors"]
