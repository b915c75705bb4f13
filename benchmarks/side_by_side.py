"""What the zoo-against-PyTorch epoch benchmarks share: the hand-written reference's training
loop, the epoch-by-epoch alternation of the two sides, and the ratios and the JSON they write.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch


def reference_epoch(
    loss: Callable[[torch.Tensor], torch.Tensor], optimizer, n: int, batch_size: int
) -> float:
    """One epoch of a plain PyTorch loop over a permutation of ``n`` rows cut into full
    batches, as the zoo's trainer draws them; ``loss(index)`` is a minibatch's loss. Returns
    the mean loss per row."""
    steps = n // batch_size
    total = 0.0
    for index in torch.randperm(n)[: steps * batch_size].view(steps, batch_size):
        optimizer.zero_grad()
        value = loss(index)
        value.backward()
        optimizer.step()
        total += value.item()
    return total / steps / n


def alternate(
    epochs: int, zoo_epoch: Callable[[int], float], torch_epoch: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Runs ``zoo_epoch(epoch)`` and ``torch_epoch()`` in turn, epoch by epoch, so that both
    see the same load; each returns its training loss. Returns the two lists of seconds."""
    zoo_times, torch_times = [], []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        zoo_loss = zoo_epoch(epoch)
        zoo_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch_loss = torch_epoch()
        torch_times.append(time.perf_counter() - start)
        print(
            f"epoch {epoch}: zoo {zoo_times[-1]:.2f} s (loss {zoo_loss:.4f}), "
            f"torch {torch_times[-1]:.2f} s (loss {torch_loss:.4f})",
            flush=True,
        )
    return zoo_times, torch_times


def ratios_result(name: str, settings: dict, zoo_times: list, torch_times: list) -> dict:
    """The per-epoch ratios' median, min and max, without the first epoch (one-off costs:
    optimizer set-up, JIT tracing), with the times, the machine and the versions."""
    ratios = [z / t for z, t in zip(zoo_times[1:], torch_times[1:])]
    return {
        "benchmark": name,
        "settings": settings,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
        "zoo_epoch_s": zoo_times,
        "torch_epoch_s": torch_times,
        "zoo_epoch_s_median": statistics.median(zoo_times[1:]),
        "torch_epoch_s_median": statistics.median(torch_times[1:]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
    }


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
