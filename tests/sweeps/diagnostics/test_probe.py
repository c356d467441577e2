"""The probe of a mini-batch objective is the training loop's own run, seen per tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeps.diagnostics.probe import probe
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from minibatch_objectives import tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny

HP = Hyperparams("adam", 0.01)


def test_minibatch_probe_statistics_are_the_training_runs() -> None:
    probed = probe(tiny(), HP, 4)
    trained = train(tiny(), HP, 4)

    assert probed.minibatch and probed.failure is None
    assert probed.steps_per_epoch == 5  # 37 rows in batches of 8
    assert probed.history.names == trained.history.names
    for name in probed.history.names:
        np.testing.assert_array_equal(probed.history.metric(name), trained.history.metric(name),
                                      err_msg=name)
    assert set(probed.validation) == {"val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in probed.validation.values())


def test_minibatch_probe_tensors_add_up_to_the_runs_totals() -> None:
    probed = probe(tiny(), HP, 4)
    numel = np.array([np.prod(t.shape) for t in probed.tensors])
    history = probed.history

    assert [t.name for t in probed.tensors] == list(tiny().init_params(torch.device("cpu")))
    for column, total in (("grad_abs_mean", history.grad_abs_mean),
                          ("update_abs_mean", history.update_abs_mean)):
        per_tensor = np.array([getattr(t, column) for t in probed.tensors])
        assert (per_tensor * numel).sum() / numel.sum() == pytest.approx(total.mean(),
                                                                         rel=1e-9), column
    for t in probed.tensors:
        assert t.steps_per_epoch == 5
        assert t.epochs_to_move == pytest.approx(0.01 / (t.update_ratio * 5))


def test_a_diverging_minibatch_probe_says_where_it_stopped() -> None:
    probed = probe(tiny(), Hyperparams("sgd", 1e300), 4)
    assert probed.failure == "non-finite loss at epoch 0"
    assert len(probed.history) == 0 and len(probed.tensors) == 6
