"""What the zoo-against-PyTorch epoch benchmarks share: the hand-written reference's training
loop, the epoch-by-epoch alternation of the two sides, and the ratios and the JSON they write.
"""

from __future__ import annotations

import dataclasses
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


def interleave(epochs: int, sides: dict[str, Callable[[int], object]]) -> dict[str, list[float]]:
    """Runs each side's ``epoch(epoch)`` in turn, epoch by epoch, so that all see the same
    load; returns the seconds of each side's epochs."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for epoch in range(1, epochs + 1):
        for name, run in sides.items():
            start = time.perf_counter()
            run(epoch)
            seconds[name].append(time.perf_counter() - start)
        print(
            f"epoch {epoch}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()),
            flush=True,
        )
    return seconds


def peer_ratios(seconds: dict[str, list[float]], peers=None) -> dict:
    """The median, min and max of the per-epoch ratio of each pair of peers (by default every
    side but the floor) and of each peer to the ``floor``, the first epoch left out (one-off
    costs: JIT compilation)."""
    peers = peers or [side for side in seconds if side != "floor"]
    pairs = [(a, b) for i, a in enumerate(peers) for b in peers[i + 1 :]]
    pairs += [(side, "floor") for side in peers]
    ratios = {}
    for a, b in pairs:
        per_epoch = [x / y for x, y in zip(seconds[a][1:], seconds[b][1:])]
        ratios[f"{a}/{b}"] = {
            "median": statistics.median(per_epoch),
            "min": min(per_epoch),
            "max": max(per_epoch),
        }
    return ratios


def peer_result(name: str, settings: dict, seconds: dict, check: dict, versions: dict) -> dict:
    """The JSON of a benchmark against peers: settings, seconds, ratios, the check that the
    sides did the same work, versions and machine; printed as a table of ratios."""
    result = {
        "benchmark": name,
        "settings": settings,
        "epoch_s": seconds,
        "epoch_s_median": {k: statistics.median(v[1:]) for k, v in seconds.items()},
        "ratios": peer_ratios(seconds),
        "check": check,
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__, **versions},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    for pair, r in result["ratios"].items():
        print(f"{pair:16s} median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})")
    print("check: " + ", ".join(f"{k} {v:.4f}" for k, v in check.items()))
    return result


def add_peer_arguments(parser, *, epochs: int, train_rows: int, out: str) -> None:
    """The arguments every benchmark against peers takes."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--train-rows", type=int, default=train_rows, help="first rows (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(out))


def trainer_epochs(trainer) -> Callable[[int], None]:
    """A zoo trainer's side: ``run(epoch)`` trains it up to that epoch."""

    def run(epoch: int) -> None:
        trainer.settings = trainer.settings.model_copy(update={"epochs": epoch})
        trainer.fit()

    return run


def training_rows(name: str, rows: int):
    """A data set with only its first ``rows`` training rows (0: all): shorter epochs, so
    more of them, and more ratios, in the same time."""
    from zoo.data import load_dataset

    data = load_dataset(name)
    if rows:
        keep = slice(0, rows)
        data = dataclasses.replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep])
    return data
