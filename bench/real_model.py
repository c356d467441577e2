"""What do the per-step diagnostics cost on a real-size model?

    python -m bench.real_model
    python -m bench.real_model --repeats 7 --epochs 2 --threads 2

A 784-1024-256-128-10 ReLU MLP (1,100,426 parameters in 8 tensors) trained with Adam (lr 1e-3)
on synthetic classification data (16,384 rows of 784 float32 features, 10 classes), batch 128,
on the CPU. The baseline is the loop a careful user writes: a plain ``nn.Module`` over the same
batches in the same order (``DatasetObjective.batches``), ``zero_grad(set_to_none=True)``,
forward, loss, backward, step, and no statistics. Against it ``train_minibatch`` on a
``DatasetObjective`` of the same module and data, with its default settings (per-tensor
statistics on), then with ``per_tensor=False``: same epochs, same batches, same torch thread
count. The three run alternately after a warm-up, ``--repeats`` times each in one process;
the figures are the medians of seconds per epoch and each repeat's ratio to the baseline run
next to it.

Memory: the bytes of the tensors a ``StepRecorder`` holds (its buffers, walked from its
attributes after two recorded steps, each storage counted once, the parameters' own storages
left out) against the bytes of the parameters. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .context import REPO
from .report import write_json

__all__ = ["LAYERS", "main", "recorder_bytes"]

DEFAULT_OUT = REPO / "bench" / "results" / "real_model.json"
LAYERS = (784, 1024, 256, 128, 10)  # the MLP's widths: 1,100,426 parameters
ROWS = 16_384  # synthetic training rows
BATCH = 128
LR = 1e-3
BAR_RATIO = 1.2  # tracked epoch (per-tensor on) over the bare loop
BAR_MEMORY = 2.0  # recorder's buffers over the parameters' bytes


def build_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for width_in, width_out in zip(LAYERS[:-1], LAYERS[1:]):
        layers += [torch.nn.Linear(width_in, width_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def build_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs from a Gaussian, labels from a random linear teacher: learnable, not trivial."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(ROWS, LAYERS[0], generator=generator)
    teacher = torch.randn(LAYERS[0], LAYERS[-1], generator=generator)
    return inputs, (inputs @ teacher).argmax(dim=1)


def bare_loop(model: torch.nn.Module, objective: Any, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the careful user's loop over ``objective``'s batches."""
    import copy

    net = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    inputs, targets = objective._train  # the very tensors the objective trains on
    loss_fn = torch.nn.functional.cross_entropy
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in objective.batches(epoch, torch.device("cpu")):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def tracked_loop(objective: Any, epochs: int, per_tensor: bool) -> float:
    """Seconds for ``epochs`` epochs of ``train_minibatch`` (all of it: set-up to result)."""
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.minibatch import train_minibatch

    start = time.perf_counter()
    result = train_minibatch(objective, Hyperparams("adam", LR), epochs, per_tensor=per_tensor)
    elapsed = time.perf_counter() - start
    if result.status != "complete":
        raise RuntimeError(f"the tracked run did not complete: {result.failure}")
    return elapsed


def recorder_bytes(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   per_tensor: bool = True) -> tuple[int, int]:
    """(bytes of a ``StepRecorder``'s own tensors, bytes of the parameters) after two recorded
    steps of Adam on the first batch."""
    from sweeps.training.recorder import StepRecorder, tracked_tensors

    names, params = zip(*[(k, p.detach().clone().requires_grad_(True))
                          for k, p in model.named_parameters()])
    recorder = StepRecorder(list(params), 1, tracked_tensors(list(names), per_tensor))
    optimizer = torch.optim.Adam(params, lr=LR)
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(
            torch.func.functional_call(model, dict(zip(names, params)), (inputs[:BATCH],)),
            targets[:BATCH])
        loss.backward()
        recorder.before_step(loss, [p.grad for p in params])
        optimizer.step()
        recorder.after_step(LR)
    own = {p.untyped_storage().data_ptr() for p in params}
    storages: dict[int, int] = {}
    for tensor in _tensors(vars(recorder)):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()), sum(p.numel() * p.element_size() for p in params)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "__dict__") and type(value).__module__.startswith("sweeps."):
        return _tensors(vars(value))  # a recorder's parts (StepRecorder's RowStepRecorder)
    return []


def measure(repeats: int, epochs: int) -> dict[str, Any]:
    """The alternated timings and the memory figures."""
    from objectives.dataset import DatasetObjective

    model = build_model()
    inputs, targets = build_data()
    objective = DatasetObjective(model, (inputs, targets), batch_size=BATCH,
                                 loss_fn=torch.nn.functional.cross_entropy, name="real-mlp")
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_loop(model, objective, epochs),
        "tracked": lambda: tracked_loop(objective, epochs, per_tensor=True),
        "tracked_no_per_tensor": lambda: tracked_loop(objective, epochs, per_tensor=False),
    }
    for run in runs.values():  # warm-up: allocator, kernels, imports
        run()
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            seconds[key].append(run() / epochs)
    ratios = {key: [t / b for t, b in zip(seconds[key], seconds["bare"])]
              for key in runs if key != "bare"}
    buffers, param_bytes = recorder_bytes(model, inputs, targets)
    buffers_off, _ = recorder_bytes(model, inputs, targets, per_tensor=False)
    ratio = statistics.median(ratios["tracked"])
    memory = buffers / param_bytes
    return {
        "model": "-".join(map(str, LAYERS)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": len(list(model.parameters())),
        "rows": ROWS, "batch": BATCH, "steps_per_epoch": objective.steps_per_epoch,
        "optimizer": f"adam lr={LR:g}", "threads": torch.get_num_threads(),
        "torch": torch.__version__, "epochs_per_run": epochs, "repeats": repeats,
        "seconds_per_epoch": {key: statistics.median(v) for key, v in seconds.items()},
        "seconds_per_epoch_all": seconds,
        "ratio": {key: statistics.median(v) for key, v in ratios.items()},
        "ratio_all": ratios,
        "recorder_bytes": buffers, "recorder_bytes_no_per_tensor": buffers_off,
        "parameter_bytes": param_bytes, "memory_ratio": memory,
        "bars": {"ratio": f"<= {BAR_RATIO}", "memory": f"<= {BAR_MEMORY}"},
        "met": {"ratio": ratio <= BAR_RATIO, "memory": memory <= BAR_MEMORY},
    }


def describe(result: dict[str, Any]) -> str:
    lines = [f"{result['model']} MLP, {result['parameters']:,} parameters in "
             f"{result['tensors']} tensors, {result['rows']:,} rows, batch {result['batch']} "
             f"({result['steps_per_epoch']} steps/epoch), {result['optimizer']}, "
             f"{result['threads']} threads, median of {result['repeats']}",
             f"{'loop':<24}{'s/epoch':>10}{'x bare':>9}"]
    for key, value in result["seconds_per_epoch"].items():
        ratio = "" if key == "bare" else f"{result['ratio'][key]:.3f}"
        lines.append(f"{key:<24}{value:>10.3f}{ratio:>9}")
    mib = 2**20
    lines.append(f"recorder buffers: {result['recorder_bytes'] / mib:.2f} MiB "
                 f"({result['recorder_bytes_no_per_tensor'] / mib:.2f} without per-tensor) "
                 f"vs parameters {result['parameter_bytes'] / mib:.2f} MiB: "
                 f"{result['memory_ratio']:.2f}x")
    met = result["met"]
    lines.append(f"bars: ratio {result['bars']['ratio']} {'met' if met['ratio'] else 'MISSED'}, "
                 f"memory {result['bars']['memory']} {'met' if met['memory'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each loop")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        parser.error(f"--repeats and --epochs must be at least 1 but got {args.repeats} and "
                     f"{args.epochs}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = measure(args.repeats, args.epochs)
    print(describe(result))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
