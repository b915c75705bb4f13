"""scikit-learn's Gaussian mixtures on a zoo data set, written as zoo run summaries.

Takes the overrides of a zoo GMM run (``experiment=...``, ``data.*``, ``seed``), builds the
same data set with the same split, fits ``GaussianMixture`` (EM, ``--method em``) or
``BayesianGaussianMixture`` (coordinate-ascent variational Bayes, ``--method bgm``) with
the config's covariance (``model.covariance``: diagonal is ``covariance_type="diag"``, full
is ``"full"``) and number of components, and writes one
``summary.json`` per run in the form the zoo writes, so ``python -m zoo.report`` can put
scikit-learn rows beside the zoo's. One override may list several values (``seed=0,1,2``,
``data.fold=0,1,2,3,4``): one run each, in ``--out/<key>=<value>/``::

    python benchmarks/sklearn_gmm.py experiment=gmm_synthetic_1m seed=0,1,2 --method bgm \\
        --out results/runs/gmm_at_scale/sklearn_bgm_1m

The metrics carry the zoo's names: ``test/log_pred_plugin`` (mean held-out log-likelihood
per point at scikit-learn's point estimate, in the data's original units), ``test/ari``
where there are labels, and ``fit/*`` (the components in original units, ordered as the
zoo orders its own). ``time.fit_s`` is the ``fit`` call alone; ``resources.peak_rss_mb`` is
the process's peak resident memory after the run (Python, torch and the data included, as
for the zoo). Needs the ``bench`` extra: scikit-learn is never needed to train.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import sklearn
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from zoo.__main__ import config_dir
from zoo.app import machine, peak_rss_mb, versions
from zoo.data import load_dataset
from zoo.files import write_text_atomic
from zoo.models.gmm import fitted_component_metrics

METHODS = {"em": GaussianMixture, "bgm": BayesianGaussianMixture}


def split_sweep(overrides: list[str]) -> tuple[list[str], str, list[str]]:
    """The fixed overrides, and the one swept key with its values (``seed`` = its default
    when nothing is swept)."""
    swept = [o for o in overrides if "," in o.partition("=")[2]]
    if len(swept) > 1:
        raise SystemExit(f"sklearn_gmm: sweep one key at a time, got {', '.join(swept)}")
    if not swept:
        return overrides, "seed", []
    key, _, values = swept[0].partition("=")
    return [o for o in overrides if o != swept[0]], key, values.split(",")


def covariance_type(cfg) -> str:
    """scikit-learn's name for the config's ``model.covariance``."""
    return {"diagonal": "diag", "full": "full"}[cfg.model.get("covariance", "diagonal")]


def fit_one(cfg, method: str) -> dict:
    data_settings = OmegaConf.to_container(cfg.data, resolve=True)
    data = load_dataset(data_settings.pop("name"), **data_settings)
    train_x, test_x = data.train_x.double().numpy(), data.test_x.double().numpy()
    estimator = METHODS[method](
        n_components=cfg.model.components,
        covariance_type=covariance_type(cfg),
        random_state=cfg.seed,
    )
    start = time.perf_counter()
    estimator.fit(train_x)
    fit_s = time.perf_counter() - start

    # the density of standardized data, back in original units: divide by prod(std)
    log_jacobian = 0.0 if data.std is None else float(data.std.double().log().sum())
    metrics = {"test/log_pred_plugin": float(estimator.score(test_x)) - log_jacobian}
    if data.test_y is not None:
        metrics["test/ari"] = float(adjusted_rand_score(data.test_y, estimator.predict(test_x)))
    locs, covariances = torch.from_numpy(estimator.means_), torch.from_numpy(estimator.covariances_)
    extra = {}
    if covariances.dim() == 3:  # full: per-feature scales and the correlations' Cholesky factor
        scales = covariances.diagonal(dim1=-2, dim2=-1).sqrt()
        corr = covariances / (scales.unsqueeze(-1) * scales.unsqueeze(-2))
        extra["corr_cholesky"] = torch.linalg.cholesky(corr)
    else:
        scales = covariances.sqrt()
    if data.mean is not None:
        locs, scales = locs * data.std + data.mean, scales * data.std
    fitted = {"weights": torch.from_numpy(estimator.weights_), "locs": locs, "scales": scales}
    fitted.update(extra)
    metrics.update(fitted_component_metrics(fitted, data))
    return {
        "metrics": metrics,
        "train": {
            "iterations": int(estimator.n_iter_),
            "converged": bool(estimator.converged_),
            "lower_bound": float(estimator.lower_bound_),
        },
        "time": {"fit_s": fit_s, "train_s": fit_s},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="zoo overrides, e.g. experiment=gmm_old_faithful"
    )
    parser.add_argument("--method", choices=sorted(METHODS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs' summaries")
    args = parser.parse_args(argv)

    fixed, key, values = split_sweep(args.overrides)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for value in values or [None]:
            overrides = fixed if value is None else [*fixed, f"{key}={value}"]
            cfg = compose(config_name="config", overrides=overrides)
            if cfg.model.name != "gmm":
                raise SystemExit(
                    f"sklearn_gmm: the overrides select model={cfg.model.name}, not gmm"
                )
            start = time.perf_counter()
            result = fit_one(cfg, args.method)
            run_dir = args.out / ",".join(sorted(overrides))
            summary = {
                "model": f"sklearn_{args.method}",
                "data": cfg.data.name,
                "seed": cfg.seed,
                "config": {
                    "data": OmegaConf.to_container(cfg.data, resolve=True),
                    "seed": cfg.seed,
                    "baseline": {
                        "estimator": METHODS[args.method].__name__,
                        "n_components": cfg.model.components,
                        "covariance_type": covariance_type(cfg),
                    },
                },
                **result,
                "resources": {"peak_rss_mb": peak_rss_mb()},
                "versions": {**versions(), "sklearn": sklearn.__version__},
                "machine": machine(),
                "out_dir": str(run_dir),
            }
            summary["time"]["run_s"] = time.perf_counter() - start
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                run_dir / "summary.json", json.dumps(summary, indent=2) + "\n", "summary"
            )
            log_lik = summary["metrics"]["test/log_pred_plugin"]
            print(
                f"{args.method} {' '.join(overrides)}: held-out log-lik {log_lik:.4f} per point, "
                f"fit {result['time']['fit_s']:.2f} s, peak {summary['resources']['peak_rss_mb']:.0f} MiB"
                + ("" if math.isfinite(log_lik) else "  (not finite)")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
