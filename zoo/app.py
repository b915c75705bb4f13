"""``run(cfg, out_dir)``: one experiment from a composed config to its summary.

The Hydra entry point (:mod:`zoo.__main__`) only composes the config and calls
:func:`run`; everything here can be called from Python or a test without Hydra.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import pyro
import torch
from omegaconf import DictConfig, OmegaConf

from zoo.config import RunSpec, check_against_data, check_resume, validate
from zoo.data import load_dataset
from zoo.distributed import Collectives, Ranks, join, leave, rank_seed, ranks_from_environment
from zoo.errors import ConfigError, TrainingDiverged
from zoo.files import strict_json, write_text_atomic
from zoo.loggers import RunLogger, make_logger
from zoo.models import MODELS
from zoo.optim import import_lazy_parts_of_torch_optim
from zoo.rundir import own_run_folder
from zoo.schedules import schedule_from
from zoo.train import Trainer

SUMMARY_NAME = "summary.json"

log = logging.getLogger(__name__)


def resolve_device(name: str, ranks: Ranks | None = None) -> torch.device:
    """The run's device; in a data-parallel run a CUDA rank takes the GPU of its
    ``LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device = 'cuda' but torch sees no CUDA GPU here; use device=cpu or device=auto."
        )
    if name == "cuda" and ranks is not None:
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"device = 'cuda' for {ranks}, local rank {ranks.local_rank}, but this machine "
                f"has {torch.cuda.device_count()} GPU(s): start at most that many ranks per "
                "node (torchrun --nproc_per_node)."
            )
        return torch.device("cuda", ranks.local_rank)
    return torch.device(name)


def build_model(spec: RunSpec, data):
    """The model of ``spec.model`` for ``data``, built with its validated settings."""
    try:
        return MODELS[spec.model.name].build(data, **spec.model.build_options())
    except ValueError as e:  # what only the data can tell (e.g. every restart diverged)
        raise ConfigError(
            f"model={spec.model.name} cannot be fitted to data={data.name}: {e}."
        ) from e


def load_run_data(spec: RunSpec, device: torch.device | str = "cpu"):
    """The data set of ``spec`` on ``device``, checked against the model's settings. Call it
    after seeding with ``spec.run.seed``, as a run does: a generated data set draws from the
    seeded streams."""
    data = load_dataset(spec.data.name, **spec.data.model_dump(exclude={"name"})).to(device)
    check_against_data(spec, data)
    return data


def build_run_model(spec: RunSpec, data, device: torch.device | str = "cpu"):
    """The untrained model of ``spec`` for ``data``, on ``device``, built as a run builds it:
    the GMM's k-means++ restarts train here, under the trainer's validation setting."""
    with pyro.validation_enabled(spec.trainer.validation):
        return build_model(spec, data).to(device)


def final_evaluation(spec: RunSpec, model, data, progress: bool = False) -> dict:
    """The test metrics of a run's summary: ``model.evaluation``'s settings, on the
    evaluation's own seeded stream (``trainer.eval_seed``), without Pyro's validation; the
    caller's random streams are left as they were."""
    evaluation = spec.model.evaluation.model_dump()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
        torch.manual_seed(spec.trainer.eval_seed)
        return model.evaluate(data, **evaluation, progress=progress)


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
    """Trains and evaluates the configured model; writes the run's files into ``out_dir``,
    which it holds from start to summary (:func:`zoo.rundir.own_run_folder`: another process
    is refused it, and a fresh run refuses a folder that holds a run unless ``overwrite``).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run
    (:mod:`zoo.distributed`): rank 0 owns ``out_dir`` and returns the summary; the other
    ranks train beside it, write nothing, and return ``{"rank": r, "world_size": R}``.

    :returns: the summary: final test metrics, figures, seed, versions, timings.
    """
    start = time.perf_counter()
    spec = validate(cfg)
    ranks = ranks_from_environment()
    if ranks is not None and not ranks.is_main:
        return _run_beside_rank_0(cfg, spec, ranks, start)
    # held before any data is read: a refused folder costs nothing
    with own_run_folder(out_dir, resume=spec.run.resume, overwrite=spec.run.overwrite):
        return _run_in_owned_folder(cfg, spec, Path(out_dir), start, ranks)


def _run_beside_rank_0(cfg: DictConfig, spec: RunSpec, ranks: Ranks, start: float) -> dict:
    """A rank other than 0: trains in step with the others, keeps no files of its own."""
    device = resolve_device(spec.run.device, ranks)
    join(ranks, device)
    try:
        _train_evaluate_report(cfg, spec, None, start, device, {}, None, ranks)
    finally:
        leave()
    return {"rank": ranks.rank, "world_size": ranks.world_size}


def _run_in_owned_folder(
    cfg: DictConfig, spec: RunSpec, out_dir: Path, start: float, ranks: Ranks | None
) -> dict:
    device = resolve_device(spec.run.device, ranks)
    # before any data is read: a resume whose settings would change the trained parameters
    changes = check_resume(cfg, out_dir).allowed if spec.run.resume else {}
    tracker = make_logger(spec.logger, out_dir)  # before any data is read, as the checks above
    if ranks is not None:
        join(ranks, device)
    try:
        tracker.start(spec.values())
        summary = _train_evaluate_report(
            cfg, spec, out_dir, start, device, changes, tracker, ranks
        )
        tracker.finish(summary, summary["figures"])
        return summary
    finally:
        tracker.close()
        leave()


def _train_evaluate_report(
    cfg: DictConfig,
    spec: RunSpec,
    out_dir: Path,
    start: float,
    device: torch.device,
    changes: dict,
    tracker: RunLogger | None,
    ranks: Ranks | None = None,
) -> dict | None:
    """Trains, evaluates, writes the figures and the summary into ``out_dir``; a rank other
    than 0 (``out_dir`` None) only trains and returns None."""
    if spec.run.threads is not None:
        torch.set_num_threads(spec.run.threads)
    pyro.set_rng_seed(spec.run.seed)
    data = load_run_data(spec, device)
    optim_import_s = import_lazy_parts_of_torch_optim()  # not part of the fit: see there
    build_start = time.perf_counter()
    model = build_run_model(spec, data, device)
    build_s = time.perf_counter() - build_start
    evaluation = spec.model.evaluation.model_dump()
    periodic = spec.periodic_evaluation.model_dump()
    identity_hash = spec.identity_hash(device.type)
    settings = spec.trainer
    collectives = Collectives(ranks, device) if ranks is not None else None
    trainer = Trainer(
        model,
        data,
        spec.optim.build(),
        settings,
        schedule=schedule_from(spec.anneal),
        evaluate=lambda: model.evaluate(data, **periodic),
        out_dir=out_dir,
        identity={"model": spec.model.name, "config": identity_hash},
        on_epoch=tracker.log_epoch if tracker is not None else None,
        collectives=collectives,
    )
    if ranks is not None and not ranks.is_main:
        # the data and the initial parameters agree with rank 0's (one seed); the Monte
        # Carlo draws of training come from a stream of the rank's own
        pyro.set_rng_seed(rank_seed(spec.run.seed, ranks.rank))
    if spec.run.resume:
        trainer.resume()
        if ranks is None or ranks.is_main:
            print(
                f"resumed from {trainer.resumed_from} after epoch {trainer.epoch}", file=sys.stderr
            )
    if out_dir is None:
        trainer.fit()
        return None
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True), "config")

    history = trainer.fit()
    # the final evaluation can outlast training (the VAE's K = 5000 estimate): say so in the log
    log.info("final evaluation on %d test rows (%s)", len(data.test_x), _settings_text(evaluation))
    eval_start = time.perf_counter()
    metrics = final_evaluation(spec, model, data, progress=settings.progress)
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
        "model": spec.model.name,
        "data": spec.data.name,
        "seed": spec.run.seed,
        "config_hash": identity_hash,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epochs": trainer.epoch,
        "world_size": trainer.world_size,  # data-parallel ranks (torchrun); 1 for one process
        "stopped": trainer.stopped,
        "replay": trainer.replay_summary,  # zoo.replay: steps replayed in this process
        "metrics": metrics,
        "train": {k: v for k, v in history[-1].items() if k.startswith("train/") or k == "beta"},
        "time": {
            "build_s": build_s,
            "train_s": history[-1]["time/total_s"],
            "fit_s": build_s + history[-1]["time/total_s"],  # what a fit costs: build and train
            "eval_s": eval_s,
            "optim_import_s": optim_import_s,
            "run_s": time.perf_counter() - start,
        },
        "resources": {"peak_rss_mb": peak_rss_mb()},
        "device": str(device),
        "versions": versions(),
        "machine": machine(),
        "figures": figures,
        "out_dir": str(out_dir),
    }
    if changes:  # settings a resume changed that cannot change the trained parameters
        summary["resumed_with_changes"] = {k: list(v) for k, v in changes.items()}
    # strict JSON: a non-finite value of a nested metric is written as null, never as NaN
    write_text_atomic(out_dir / SUMMARY_NAME, strict_json(summary, indent=2) + "\n", "summary")
    return summary


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: the test metrics and where the files are."""
    stopped = summary.get("stopped", {})
    early = (
        f" ({stopped['reason']} after {stopped['steps']} steps)"
        if stopped.get("reason", "epochs") != "epochs"
        else ""
    )
    lines = [
        f"{summary['model']} on {summary['data']}, seed {summary['seed']}, {summary['epochs']} epochs"
        f"{early} in {summary['time']['train_s']:.1f} s ({summary['device']})"
    ]
    width = max([24, *(len(key) for key in summary["metrics"])])
    for key, value in summary["metrics"].items():
        lines.append(
            f"  {key:<{width}} {value:.3f}"
            if isinstance(value, float)
            else f"  {key:<{width}} {value}"
        )
    lines.append(f"  summary: {Path(summary['out_dir']) / SUMMARY_NAME}")
    for name, path in summary["figures"].items():
        lines.append(f"  figure {name}: {path}")
    return "\n".join(lines)
