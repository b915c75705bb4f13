"""``run(cfg, out_dir)``: one experiment from a composed config to its summary.

The Hydra entry point (:mod:`zoo.__main__`) only composes the config and calls
:func:`run`; everything here can be called from Python or a test without Hydra.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import hydra
import pyro
import torch
from omegaconf import DictConfig, OmegaConf

from zoo.config import check_config, config_hash
from zoo.data import load_dataset
from zoo.errors import ConfigError, OutputError, TrainingDiverged
from zoo.files import write_text_atomic
from zoo.models import MODELS
from zoo.schedules import make_schedule
from zoo.train import Trainer, TrainSettings

SUMMARY_NAME = "summary.json"

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device = 'cuda' but torch sees no CUDA GPU here; use device=cpu or device=auto."
        )
    return torch.device(name)


def build_model(cfg: DictConfig, data):
    """The model named by ``cfg.model.name`` with the other keys of ``cfg.model`` as settings."""
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    name = settings.pop("name")
    settings.pop("evaluation", None)
    settings.pop("periodic_evaluation", None)
    if name not in MODELS:
        raise ConfigError(
            f"model.name = {name!r} is not a zoo model; valid: {', '.join(sorted(MODELS))}."
        )
    try:
        return MODELS[name].build(data, **settings)
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unknown is None:
            raise ConfigError(f"the model settings are not valid for model={name}: {e}.") from e
        accepted = inspect.signature(MODELS[name]).parameters
        valid = [k for k in accepted if k != "num_features"] + [
            "evaluation",
            "periodic_evaluation",
        ]
        raise ConfigError(
            f"model.{unknown[1]} is not a setting of model={name}; valid: {', '.join(valid)}."
        ) from e
    except ValueError as e:
        raise ConfigError(f"the model settings are not valid for model={name}: {e}.") from e


def build_optim(cfg: DictConfig) -> pyro.optim.PyroOptim:
    try:
        return hydra.utils.instantiate(cfg.optim)
    except Exception as e:  # hydra wraps the optimizer's own complaint
        raise ConfigError(
            f"optim could not be built from {OmegaConf.to_container(cfg.optim)}: {e}"
        ) from e


def versions() -> dict[str, str]:
    import hydra as hydra_module

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "hydra": hydra_module.__version__,
    }


def machine() -> dict[str, object]:
    """What the run ran on, for results tables."""
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def peak_rss_mb() -> float | None:
    """The process's peak resident memory so far, in MiB (data, model, Python and torch);
    None where the platform cannot say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


def run(cfg: DictConfig, out_dir: str | os.PathLike) -> dict:
    """Trains and evaluates the configured model; writes the run's files into ``out_dir``.

    :returns: the summary: final test metrics, figures, seed, versions, timings.
    """
    start = time.perf_counter()
    check_config(cfg)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"the output folder {out_dir} cannot be created: {e.strerror or e}. "
            "Choose a writable folder (hydra.run.dir=...)."
        ) from e
    device = resolve_device(cfg.device)
    if cfg.get("threads") is not None:
        torch.set_num_threads(cfg.threads)
    pyro.set_rng_seed(cfg.seed)

    data_settings = OmegaConf.to_container(cfg.data, resolve=True)
    data = load_dataset(data_settings.pop("name"), **data_settings).to(device)
    build_start = time.perf_counter()
    # the GMM's k-means++ restarts train here: under the trainer's validation setting too
    with pyro.validation_enabled(bool(cfg.trainer.get("validate", False))):
        model = build_model(cfg, data).to(device)
    build_s = time.perf_counter() - build_start
    evaluation = OmegaConf.to_container(cfg.model.get("evaluation", {}), resolve=True)
    periodic = {
        **evaluation,
        **OmegaConf.to_container(cfg.model.get("periodic_evaluation", {}), resolve=True),
    }
    anneal = OmegaConf.to_container(cfg.anneal, resolve=True)
    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    valid = [f.name for f in dataclasses.fields(TrainSettings)]
    for key in trainer_settings:
        if key not in valid:
            raise ConfigError(f"trainer.{key} is not a trainer setting; valid: {', '.join(valid)}.")
    try:
        settings = TrainSettings(**trainer_settings)
        trainer = Trainer(
            model,
            data,
            build_optim(cfg),
            settings,
            schedule=make_schedule(anneal.pop("name"), **anneal),
            evaluate=lambda: model.evaluate(data, **periodic),
            out_dir=out_dir,
            identity={"model": cfg.model.name, "config": config_hash(cfg)},
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e
    if cfg.resume:
        trainer.resume()
        print(f"resumed from {trainer.resumed_from} after epoch {trainer.epoch}", file=sys.stderr)
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True), "config")

    history = trainer.fit()
    # the final evaluation can outlast training (the VAE's K = 5000 estimate): say so in the log
    log.info("final evaluation on %d test rows (%s)", len(data.test_x), _settings_text(evaluation))
    eval_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
        torch.manual_seed(settings.eval_seed)
        metrics = model.evaluate(data, **evaluation, progress=settings.progress)
    eval_s = time.perf_counter() - eval_start
    log.info("final evaluation took %.1f s", eval_s)
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(
            f"the final evaluation gave {', '.join(f'{k} = {metrics[k]}' for k in bad)}: the "
            f"trained parameters are not usable; no summary was written in {out_dir}."
        )
    figures = model.figures(data, history, out_dir / "figures")
    summary = {
        "model": cfg.model.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "config_hash": config_hash(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epochs": trainer.epoch,
        "metrics": metrics,
        "train": {k: v for k, v in history[-1].items() if k.startswith("train/") or k == "beta"},
        "time": {
            "build_s": build_s,
            "train_s": history[-1]["time/total_s"],
            "fit_s": build_s + history[-1]["time/total_s"],  # what a fit costs: build and train
            "eval_s": eval_s,
            "run_s": time.perf_counter() - start,
        },
        "resources": {"peak_rss_mb": peak_rss_mb()},
        "device": str(device),
        "versions": versions(),
        "machine": machine(),
        "figures": figures,
        "out_dir": str(out_dir),
    }
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n", "summary")
    return summary


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: the test metrics and where the files are."""
    lines = [
        f"{summary['model']} on {summary['data']}, seed {summary['seed']}, {summary['epochs']} epochs"
        f" in {summary['time']['train_s']:.1f} s ({summary['device']})"
    ]
    for key, value in summary["metrics"].items():
        lines.append(
            f"  {key:<24} {value:.3f}" if isinstance(value, float) else f"  {key:<24} {value}"
        )
    lines.append(f"  summary: {Path(summary['out_dir']) / SUMMARY_NAME}")
    for name, path in summary["figures"].items():
        lines.append(f"  figure {name}: {path}")
    return "\n".join(lines)
