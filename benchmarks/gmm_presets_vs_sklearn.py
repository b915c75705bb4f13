"""The GMM presets as configured against scikit-learn, side by side in one process.

For each experiment preset (``experiment=gmm_synthetic_1e5`` and so on, plus any overrides),
rounds alternate: the zoo's fit exactly as ``python -m zoo`` makes it (the preset's restarts
and training, its stopping rule included: ``time.fit_s``'s part of a run), then
scikit-learn's ``BayesianGaussianMixture`` (``--method bgm``, the table's baseline) or
``GaussianMixture`` (``--method em``) with the same covariance type and number of
components on the same training rows. Each side's held-out plug-in log-likelihood per point
and ARI are computed off the clock. Prints per-round times and the median ratio zoo / scikit-
learn, and writes them as JSON::

    python benchmarks/gmm_presets_vs_sklearn.py --presets gmm_synthetic_1e5 gmm_synthetic_1m \\
        gmm_synthetic_1e7 --rounds 5 --out benchmarks/results/gmm_presets_vs_sklearn.json
    python benchmarks/gmm_presets_vs_sklearn.py --presets gmm_old_faithful --method em --rounds 7

One torch thread (``--threads``), as in the results tables; scikit-learn's BLAS keeps its
default. torch.optim's one-time lazy import is made before the first round, as ``zoo.app``
makes it before its fit clock.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from zoo.__main__ import config_dir
from zoo.app import build_model
from zoo.config import validate
from zoo.data import load_dataset
from zoo.optim import import_lazy_parts_of_torch_optim
from zoo.schedules import schedule_from
from zoo.train import Trainer

METHODS = {"em": GaussianMixture, "bgm": BayesianGaussianMixture}


def compose_preset(preset: str, overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"experiment={preset}", "trainer.progress=false", *overrides],
        )


def zoo_fit(spec, data, seed: int) -> tuple[float, dict]:
    """The preset's fit (restarts and training) on the clock; held-out metrics off it."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    model = build_model(spec, data)
    trainer = Trainer(
        model, data, spec.optim.build(), spec.trainer, schedule=schedule_from(spec.anneal)
    )
    trainer.fit()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        metrics = model.evaluate(data, mc_samples=0)
    return seconds, {
        "log_lik": metrics["test/log_pred_plugin"],
        "ari": metrics.get("test/ari"),
        "steps": trainer.stopped["steps"],
        "stopped": trainer.stopped["reason"],
        "restart_elbos": model.restart_elbos,
    }


def sklearn_fit(method: str, spec, data, seed: int) -> tuple[float, dict]:
    covariance = {"diagonal": "diag", "full": "full"}[spec.model.covariance]
    train_x, test_x = data.train_x.double().numpy(), data.test_x.double().numpy()
    estimator = METHODS[method](
        n_components=spec.model.components, covariance_type=covariance, random_state=seed
    )
    start = time.perf_counter()
    estimator.fit(train_x)
    seconds = time.perf_counter() - start
    log_jacobian = 0.0 if data.std is None else float(data.std.double().log().sum())
    result = {
        "log_lik": float(estimator.score(test_x)) - log_jacobian,
        "iterations": estimator.n_iter_,
    }
    if data.test_y is not None:
        result["ari"] = float(adjusted_rand_score(data.test_y, estimator.predict(test_x)))
    return seconds, result


def compare(preset: str, overrides: list[str], method: str, rounds: int) -> dict:
    cfg = compose_preset(preset, overrides)
    spec = validate(cfg)
    settings = OmegaConf.to_container(cfg.data, resolve=True)
    data = load_dataset(settings.pop("name"), **settings)
    zoo_times, sk_times, zoo_runs, sk_runs = [], [], [], []
    for seed in range(rounds):
        seconds, result = zoo_fit(spec, data, seed)
        zoo_times.append(seconds)
        zoo_runs.append(result)
        seconds, result = sklearn_fit(method, spec, data, seed)
        sk_times.append(seconds)
        sk_runs.append(result)
        print(
            f"{preset} round {seed}: zoo {zoo_times[-1]:.3f} s ({zoo_runs[-1]['stopped']} after "
            f"{zoo_runs[-1]['steps']} steps, log-lik {zoo_runs[-1]['log_lik']:.4f}), "
            f"scikit-learn {sk_times[-1]:.3f} s (log-lik {sk_runs[-1]['log_lik']:.4f})",
            flush=True,
        )
    ratios = [z / s for z, s in zip(zoo_times, sk_times)]
    gaps = [z["log_lik"] - s["log_lik"] for z, s in zip(zoo_runs, sk_runs)]
    summary = {
        "preset": preset,
        "overrides": overrides,
        "method": method,
        "rows": len(data.train_x) + len(data.test_x),
        "zoo_s_median": statistics.median(zoo_times),
        "sklearn_s_median": statistics.median(sk_times),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "log_lik_gap_max": max(abs(g) for g in gaps),
        "zoo_times": zoo_times,
        "sklearn_times": sk_times,
        "zoo": zoo_runs,
        "sklearn": sk_runs,
    }
    print(
        f"{preset}: zoo / scikit-learn = {summary['ratio_median']:.3f} (median of {rounds}; "
        f"{summary['ratio_min']:.3f} to {summary['ratio_max']:.3f}), zoo {summary['zoo_s_median']:.3f} s, "
        f"scikit-learn {summary['sklearn_s_median']:.3f} s; largest log-lik gap "
        f"{summary['log_lik_gap_max']:.4f} nats per point",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", required=True)
    parser.add_argument("--overrides", nargs="*", default=[], help="zoo overrides for every preset")
    parser.add_argument("--method", choices=sorted(METHODS), default="bgm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import_lazy_parts_of_torch_optim()
    results = [compare(p, args.overrides, args.method, args.rounds) for p in args.presets]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "threads": args.threads,
            "machine": {"cpu_count": __import__("os").cpu_count(), "system": platform.system()},
            "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
            "results": results,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
