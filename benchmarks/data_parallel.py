"""Data-parallel SVI (issue 21): two ranks under torchrun against one process, side by side.

For each model and seed, three runs of ``python -m zoo`` with one thread each, interleaved
seed by seed so that the machine's load falls on all of them alike:

- ``1 rank, batch 2b``: one process with the global batch of the two ranks;
- ``2 ranks, batch b``: ``torchrun --standalone --nproc_per_node=2``, b rows a rank a step;
- ``1 rank, batch b``: one process doing one rank's share of the work.

The first two take the same steps on the same global batch, so their test metrics should agree
within the seed-to-seed spread; the throughput (training rows a second, ``steps * global
batch / train_s``) of 2 ranks against ``1 rank, batch b`` is the scaling (ideally 2x: twice
the rows in the same time), and against ``1 rank, batch 2b`` what a user gains by using a
second core for the same run.

    python benchmarks/data_parallel.py                    # VAE and GMM, seeds 0 1 2
    python benchmarks/data_parallel.py --models gmm --seeds 0

It writes ``results/data_parallel/`` (``--out``): ``measurements.json`` (every run's metrics
and times) and ``README.md`` (the tables, medians with their range). The VAE is the
Fashion-MNIST 784-400-50 of the results, for 5 epochs and with K = 100 importance samples
(the comparison is of training, not of the K = 5000 protocol); the GMM is the 1e6-point
synthetic preset, trained one fixed epoch of 400 steps of 2000 rows (its stopping rule off,
so that both ways take the same steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "vae": {
        "overrides": [
            "experiment=vae_fashion_mnist",
            "trainer.epochs=5",
            "trainer.eval_every=5",
            "model.evaluation.iw_samples=100",
        ],
        "batch": 128,
        "metrics": ["test/elbo", "test/log_px"],
    },
    "gmm": {
        "overrides": [
            "experiment=gmm_synthetic_1m",
            "trainer.epochs=1",
            "trainer.stop.tol=null",
        ],
        "batch": 1000,
        "metrics": ["test/log_pred_mc", "test/ari"],
    },
}
WAYS = ("1 rank, batch 2b", "2 ranks, batch b", "1 rank, batch b")


def command(way: str, overrides: list[str]) -> list[str]:
    if way.startswith("2 ranks"):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "zoo", *overrides]  # fmt: skip
    return [sys.executable, "-m", "zoo", *overrides]


def run_once(model: str, way: str, seed: int, folder: Path) -> dict:
    spec = MODELS[model]
    batch = spec["batch"] * (2 if way == "1 rank, batch 2b" else 1)
    overrides = [
        *spec["overrides"],
        f"seed={seed}",
        f"trainer.batch_size={batch}",
        "threads=1",
        "trainer.progress=false",
        f"hydra.run.dir={folder}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command(way, overrides), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{model} {way} seed {seed} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((folder / "summary.json").read_text())
    ranks = summary.get("world_size", 1)
    steps = summary["train"]["train/steps_total"]
    train_s = summary["time"]["train_s"]
    return {
        "model": model,
        "way": way,
        "seed": seed,
        "world_size": ranks,
        "batch_per_rank": batch,
        "steps": steps,
        "train_s": train_s,
        "rows_per_s": steps * batch * ranks / train_s,
        "metrics": {k: summary["metrics"][k] for k in spec["metrics"] if k in summary["metrics"]},
    }


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.median(values):.4g} ({min(values):.4g} to {max(values):.4g})"


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def tables(runs: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in runs):
        of = [r for r in runs if r["model"] == model]
        metrics = MODELS[model]["metrics"]
        b = MODELS[model]["batch"]
        lines += [
            f"## {model} (b = {b})",
            "",
            "| way | seeds | " + " | ".join(metrics) + " | steps | rows/s (median, range) |",
            "| --- | ---: | " + " | ".join("---:" for _ in metrics) + " | ---: | ---: |",
        ]
        for way in WAYS:
            rows = [r for r in of if r["way"] == way]
            if not rows:
                continue
            cells = [mean_sd([r["metrics"][m] for r in rows]) for m in metrics]
            lines.append(
                f"| {way} | {len(rows)} | " + " | ".join(cells)
                + f" | {rows[0]['steps']} | {spread([r['rows_per_s'] for r in rows])} |"
            )  # fmt: skip
        ratios = {}
        for other in ("1 rank, batch b", "1 rank, batch 2b"):
            per_seed = []
            for seed in sorted({r["seed"] for r in of}):
                two = [r for r in of if r["seed"] == seed and r["way"] == "2 ranks, batch b"]
                one = [r for r in of if r["seed"] == seed and r["way"] == other]
                if two and one:
                    per_seed.append(two[0]["rows_per_s"] / one[0]["rows_per_s"])
            if per_seed:
                ratios[other] = per_seed
        lines.append("")
        for other, values in ratios.items():
            lines.append(
                f"- throughput of 2 ranks against {other}: {spread(values)}x, per seed "
                f"side by side (ideal: 2x)" if other == "1 rank, batch b" else
                f"- throughput of 2 ranks against {other}: {spread(values)}x (the same run on "
                "one core)"
            )  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "data_parallel")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="zoo-dp-") as scratch:
        for model in args.models:
            for seed in args.seeds:
                for way in WAYS:
                    folder = Path(scratch) / f"{model}-{seed}-{way.replace(' ', '_').replace(',', '')}"
                    runs.append(run_once(model, way, seed, folder))
                    r = runs[-1]
                    print(f"{model} seed {seed} {way}: {r['rows_per_s']:.0f} rows/s, "
                          f"{r['metrics']}", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "measurements.json").write_text(json.dumps(runs, indent=2) + "\n")
    command_line = "python benchmarks/data_parallel.py " + " ".join(sys.argv[1:])
    text = (
        "# Data-parallel SVI: 2 ranks under torchrun against 1 process\n\n"
        f"Made by `{command_line.strip()}` ({os.cpu_count()} cores, one thread a process); "
        "metrics are mean ± sd over the seeds.\n\n" + tables(runs)
    )
    (args.out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
