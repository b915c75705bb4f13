"""The hparams_search presets: an Optuna search (hydra-optuna-sweeper) that each trial's
summary metric drives: a three-trial search on the shipped digits finds the best of its trials,
and the GMM and BNN presets run; a run's objective must be one of its metrics."""

import json
from pathlib import Path

import pytest
import yaml
from zoo_subprocess import zoo

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

FAST = ["trainer.epochs=2", "trainer.progress=false"]


def trials(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


def test_a_three_trial_vae_search_reports_the_best_of_its_trials(tmp_path):
    sweep = tmp_path / "sweep"
    result = zoo(
        "-m",
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=3",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summaries = trials(sweep)
    assert len(summaries) == 3
    best = max(summaries, key=lambda s: s["metrics"]["test/elbo"])
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert found["best_value"] == pytest.approx(best["metrics"]["test/elbo"])
    params = found["best_params"]
    assert best["config"]["optim"]["optim_args"]["lr"] == pytest.approx(
        params["optim.optim_args.lr"]
    )
    assert best["config"]["model"]["latent_dim"] == params["model.latent_dim"]
    assert best["config"]["anneal"]["name"] == params["anneal"]
    # the search space of the preset, nothing else, varied between trials
    assert {s["config"]["model"]["latent_dim"] for s in summaries} <= {2, 4, 8, 16}


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        (["model=gmm", "hparams_search=gmm_optuna"], "test/log_pred_plugin"),
        (["model=bnn", "hparams_search=bnn_optuna"], "test/log_likelihood"),
    ],
)
def test_the_gmm_and_bnn_presets_search_their_metric(tmp_path, overrides, metric):
    sweep = tmp_path / "sweep"
    result = zoo(
        "-m",
        *overrides,
        "hydra.sweeper.n_trials=2",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert found["best_value"] == pytest.approx(max(s["metrics"][metric] for s in trials(sweep)))


def test_an_objective_the_run_does_not_report_names_the_metrics_it_does(tmp_path):
    result = zoo(
        "objective=test/log_pxx",
        "model.evaluation.iw_samples=0",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        "objective = 'test/log_pxx' is not a metric of this run; its metrics are test/elbo"
        in result.stderr
    )
