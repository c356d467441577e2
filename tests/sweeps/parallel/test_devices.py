"""Where each worker trains: with several GPUs, ``--device cuda`` spreads the workers over
them and ``cuda:K`` pins them all to one; the assignment is tested without a GPU, and on the
GPUs of a machine that has them."""

from __future__ import annotations

import pytest
import torch

from sweeps.checks import check_device, resolve_device, worker_device
from sweeps.errors import UsageError


@pytest.mark.parametrize(("name", "count", "devices"), [
    ("cuda", 3, ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]),  # worker i on i mod 3
    ("cuda", 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]),
    ("cuda", 1, ["cuda"] * 5),  # one GPU: torch's current device, as without workers
    ("cuda:1", 4, ["cuda:1"] * 5),  # pinned
    ("cpu", 0, ["cpu"] * 5),
    ("cpu", 2, ["cpu"] * 5),
])
def test_workers_are_spread_over_the_gpus(name: str, count: int, devices: list[str]) -> None:
    assert [worker_device(name, worker, count) for worker in range(5)] == devices


@pytest.mark.parametrize(("name", "count", "allowed"), [
    ("cuda:4", 4, "this machine has 4 GPU(s): use cuda:0 to cuda:3"),
    ("cuda", 0, "CUDA is not available here; use auto or cpu"),
    ("cuda:0", 0, "CUDA is not available here; use auto or cpu"),
])
def test_a_gpu_that_is_not_there_is_refused(name: str, count: int, allowed: str) -> None:
    with pytest.raises(UsageError) as caught:
        worker_device(name, 0, count)
    assert str(caught.value) == f"device: {name!r} is not valid; {allowed}"


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA", "cuda:1:2"])
def test_other_device_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_device(name)
    assert caught.value.allowed == "use auto, cpu, cuda or cuda:K (K a GPU's index)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_on_this_machines_gpus() -> None:
    count = torch.cuda.device_count()
    got = [resolve_device("cuda", worker) for worker in range(3)]
    assert got == (["cuda"] * 3 if count == 1 else [f"cuda:{i % count}" for i in range(3)])
    assert resolve_device("auto", 1) == got[1]
    for name in got:
        assert torch.zeros(1, device=name).device.type == "cuda"
