"""Helpers of the fault tests: each fault is caused for real (subprocesses, signals, files) on every model
in MODELS_UNDER_TEST, with tiny settings so that the default suite stays fast."""

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from zoo_subprocess import zoo, zoo_env  # noqa: F401  (re-exported for the fault tests)

from zoo.__main__ import config_dir
from zoo.data import write_idx
from zoo.data.mnist import FILES

# One entry per model: the overrides that select it with tiny sizes; every fault test runs
# on each.
MODELS_UNDER_TEST = [
    ["model=vae", "model.evaluation.iw_samples=20"],
    [
        "model=bnn",
        "model.hidden_dims=[16]",
        "model.evaluation.num_samples=10",
        "data.n_train=256",
        "trainer.batch_size=32",
    ],
    [
        "model=gmm",
        "model.restarts=2",
        "model.restart_steps=20",
        "model.evaluation.mc_samples=10",
        "trainer.batch_size=64",
    ],
]
# what every fault run adds: a few epochs, no progress bar, the CPU (bit-identical numbers)
TINY = ["trainer.epochs=3", "trainer.progress=false", "device=cpu"]


def model_id(args):
    return args[0].removeprefix("model=")


def compose_config(overrides):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.trainer.validate = True
    return cfg


def zoo_popen(*args, cwd, env=None):
    """``python -m zoo *args`` in the background, its output in ``cwd/zoo.log``."""
    log = open(Path(cwd) / f"zoo-{len(list(Path(cwd).glob('zoo-*.log')))}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or zoo_env(),
    )


def numbers(run_dir):
    """What must be bit-identical between two runs: the summary's metrics and training
    values, and every metrics.jsonl value except timings."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "metrics": summary["metrics"],
        "train": summary["train"],
        "epochs": summary["epochs"],
        "config_hash": summary["config_hash"],
        "lines": [{k: v for k, v in line.items() if not k.startswith("time/")} for line in lines],
    }


def write_mnist_like(folder, n_train=20, n_test=10):
    """The four IDX files of a tiny MNIST-like data set, uncompressed."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for part, n in (("train", n_train), ("test", n_test)):
        write_idx(
            folder / FILES[f"{part}_x"], torch.randint(0, 256, (n, 28, 28), generator=g).byte()
        )
        write_idx(folder / FILES[f"{part}_y"], torch.randint(0, 10, (n,), generator=g).byte())


def wait_for(condition, proc, timeout=240):
    """Polls ``condition()`` until it holds; fails if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before the fault"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)
