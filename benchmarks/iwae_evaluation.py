"""The VAE's importance-weighted log p(x) against its matrix-multiply floor (issue 19).

One process, one thread, the Fashion-MNIST shapes (784-400-50, a batch of 500 test images),
rounds interleaved so that every path sees the same load. Each path computes the log weights
of ``--samples`` draws per image:

- ``traced``: a Pyro trace of the model and guide per chunk of 500 draws (250,000 decoder
  passes a chunk), the path before the untraced one;
- ``untraced, 250k rows``: the VAE's ``importance_log_weights`` on the same chunks;
- ``untraced, 5k rows``: on chunks of 10 draws (5,000 rows), the default
  (``zoo.models.vae.IW_ROWS_PER_CHUNK``);
- ``floor``: the decoder's two matrix multiplies alone (``z @ W1.T``, ``h @ W2.T``) on the same
  rows, in 5,000-row chunks, nothing else.

    python benchmarks/iwae_evaluation.py --rounds 5 --samples 100

It prints the median seconds of each path and its ratio to the floor, and the full evaluation
(10,000 images, K = 5000) extrapolated from the default path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.metrics import importance_log_likelihood  # noqa: E402
from zoo.models import VAE  # noqa: E402

BATCH = 500
FULL_ROWS = 10_000 * 5_000  # decoder passes of the full evaluation


def paths(vae: VAE, x: torch.Tensor, samples: int) -> dict:
    def estimate(chunk: int, untraced: bool):
        return lambda: importance_log_likelihood(
            vae.model,
            vae.guide,
            x,
            num_samples=samples,
            chunk_size=chunk,
            log_weights=vae.importance_log_weights if untraced else None,
        )

    w1, b1 = vae.decoder[0].weight, vae.decoder[0].bias
    w2, b2 = vae.decoder[2].weight, vae.decoder[2].bias
    per_chunk = 5000 // BATCH

    def floor():
        for start in range(0, samples, per_chunk):
            z = torch.randn(min(per_chunk, samples - start) * BATCH, vae.latent_dim)
            torch.addmm(b2, torch.addmm(b1, z, w1.T), w2.T)

    return {
        "traced, 250k rows": estimate(500, untraced=False),
        "untraced, 250k rows": estimate(500, untraced=True),
        "untraced, 5k rows (default)": estimate(per_chunk, untraced=True),
        "floor (the decoder's GEMMs)": floor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100, help="draws per image")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    vae = VAE(784, latent_dim=50, hidden_dims=[400])
    x = torch.bernoulli(torch.rand(BATCH, 784))
    with torch.no_grad():
        vae.guide(x)  # set up before timing: its first call traces the model
        runs = paths(vae, x, args.samples)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    floor = statistics.median(seconds["floor (the decoder's GEMMs)"])
    rows = BATCH * args.samples
    print(
        f"{rows} decoder passes per path, {args.rounds} rounds, one thread; median s, ratio to floor"
    )
    for name, values in seconds.items():
        median = statistics.median(values)
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"  {name:30s} {median:7.3f} s  ({spread})  {median / floor:5.2f}x")
    default = statistics.median(seconds["untraced, 5k rows (default)"])
    print(
        f"full evaluation (10,000 images, K = 5000) at this rate: {default * FULL_ROWS / rows / 60:.1f} "
        f"min (floor {floor * FULL_ROWS / rows / 60:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
