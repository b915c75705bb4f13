"""The zoo's GMM (minibatch SVI) beside scikit-learn's GaussianMixture (EM) and
BayesianGaussianMixture (coordinate-ascent variational Bayes) on the same synthetic data.

Reads a finished zoo run's summary (its held-out log predictive density, ARI and training
time), regenerates the run's data set from its config, fits both scikit-learn models on the
same training rows with diagonal covariances and prints the three side by side::

    python -m zoo experiment=gmm_synthetic_1m hydra.run.dir=outputs/gmm_1m
    python benchmarks/gmm_vs_sklearn.py outputs/gmm_1m

Needs the ``bench`` extra (``pip install -e ".[bench]"``): scikit-learn is never needed to
train. Held-out log-likelihoods are nats per test point; scikit-learn's are at its point
estimate (EM) or its variational posterior's expected parameters (BayesianGaussianMixture),
comparable to the zoo's ``test/log_pred_plugin``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from zoo.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a zoo run folder of model=gmm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = yaml.safe_load((args.run_dir / "config.yaml").read_text())
    summary = json.loads((args.run_dir / "summary.json").read_text())
    data_settings = dict(cfg["data"])
    data = load_dataset(data_settings.pop("name"), **data_settings)
    train_x, test_x = data.train_x.numpy(), data.test_x.numpy()
    test_y = None if data.test_y is None else data.test_y.numpy()
    k = cfg["model"]["components"]
    log_jacobian = 0.0 if data.std is None else float(data.std.log().sum())

    metrics = summary["metrics"]
    rows = [
        (
            f"zoo GMM, SVI {summary['epochs']} epochs",
            metrics.get("test/log_pred_plugin"),
            metrics.get("test/log_pred_mc"),
            metrics.get("test/ari"),
            summary["time"]["train_s"],
        )
    ]
    for name, estimator in [
        ("sklearn GaussianMixture (EM)", GaussianMixture),
        ("sklearn BayesianGaussianMixture (VB)", BayesianGaussianMixture),
    ]:
        model = estimator(n_components=k, covariance_type="diag", random_state=args.seed)
        start = time.perf_counter()
        model.fit(train_x)
        elapsed = time.perf_counter() - start
        # mean log-likelihood per test point, in the data's original units as the zoo reports
        # it: standardized data carry the Jacobian -sum(log std)
        log_lik = float(model.score(test_x)) - log_jacobian
        ari = None if test_y is None else adjusted_rand_score(test_y, model.predict(test_x))
        rows.append((name, log_lik, None, ari, elapsed))

    print(f"{data.source}: {len(train_x)} train / {len(test_x)} test rows, K = {k}")
    print(f"{'method':<40} {'log-lik':>9} {'log-lik MC':>10} {'ARI':>7} {'fit s':>8}")
    for name, log_lik, log_lik_mc, ari, seconds in rows:
        cells = ["-" if v is None else f"{v:.4f}" for v in (log_lik, log_lik_mc, ari)]
        print(f"{name:<40} {cells[0]:>9} {cells[1]:>10} {cells[2]:>7} {seconds:>8.1f}")
    print(
        f"(zoo fit s = SVI training only; restarts and evaluation: run_s {summary['time']['run_s']:.1f})"
    )


if __name__ == "__main__":
    main()
