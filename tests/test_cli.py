"""``python -m zoo`` end to end, in subprocesses, as a user runs it."""

import json
import os

import pytest
from zoo_subprocess import zoo

FAST = ["trainer.epochs=2", "trainer.progress=false", "model.evaluation.iw_samples=20"]


def test_a_short_run_prints_its_summary_and_writes_its_files(tmp_path):
    result = zoo(*FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test/elbo" in result.stdout and "test/log_px" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert summary["time"]["eval_s"] > 0
    log = (tmp_path / "run" / "__main__.log").read_text()
    assert "final evaluation on 360 test rows (iw_samples=20" in log
    assert "final evaluation took" in log
    assert (tmp_path / "run" / "figures" / "reconstructions.png").is_file()
    assert set(os.listdir(tmp_path)) == {"run"}  # nothing written to the working directory


def test_resume_continues_a_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    assert zoo(*FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    result = zoo(
        *FAST[1:], "trainer.epochs=2", f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr and "after epoch 2" in result.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["optim.optim_args.lr=-1"],
            "optim.optim_args.lr = -1 is not valid: it must be a finite number > 0",
        ),
        (["trainer.batch_size=100000"], "exceeds the 1437 training rows"),
        (["resume=true"], "no checkpoint at"),
    ],
)
def test_bad_values_exit_non_zero_with_one_paragraph_and_no_traceback(tmp_path, args, expected):
    result = zoo(*FAST, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["model=vea"], ["Could not find 'model/vea'"]),
        (
            ["trainer.epoch=3"],
            [
                "Key 'epoch' is not in struct",
                "zoo: unknown key 'trainer.epoch' (did you mean 'trainer.epochs'?)",
            ],
        ),
        (
            ["model=gmm", "model.latnt_dim=3"],
            ["zoo: unknown key 'model.latnt_dim'; the keys of 'model' are: components,"],
        ),
    ],
)
def test_hydra_refuses_unknown_options_and_keys(tmp_path, args, expected):
    result = zoo(*args, cwd=tmp_path)
    assert result.returncode != 0
    for line in expected:
        assert line in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_groups_and_their_options(tmp_path):
    result = zoo("--help", cwd=tmp_path)
    assert result.returncode == 0
    for line in [
        "model: bnn, gmm, vae",
        "anneal: blundell, cyclical, linear, none, sigmoid",
        "data: digits, fashion_mnist, mnist, old_faithful, synthetic_gmm, toy_regression",
        "experiment: bnn_fashion_mnist",
        "gmm_old_faithful, gmm_synthetic_1e5, gmm_synthetic_1e7, gmm_synthetic_1m",
    ]:
        assert line in result.stdout


def test_multirun_runs_each_seed(tmp_path):
    result = zoo(
        "-m",
        *FAST,
        "trainer.epochs=1",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [0, 1]


GMM_FAST = [
    "model=gmm",
    "trainer.epochs=3",
    "trainer.progress=false",
    "model.restarts=2",
    "model.restart_steps=20",
    "model.evaluation.mc_samples=10",
]


def test_gmm_fits_old_faithful_and_prints_components_in_minutes(tmp_path):
    result = zoo(*GMM_FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "gmm on old_faithful" in result.stdout
    for key in ["test/log_pred_mc", "fit/weight_1", "fit/mean_0_eruptions", "fit/scale_1_waiting"]:
        assert key in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    waiting = sorted(summary["metrics"][f"fit/mean_{k}_waiting"] for k in range(2))
    assert 45 < waiting[0] < 65 and 70 < waiting[1] < 90  # minutes, not standardized units
    assert (tmp_path / "run" / "figures" / "components.png").is_file()


def test_gmm_enumerated_on_synthetic_data_reports_ari(tmp_path):
    result = zoo(
        *GMM_FAST,
        "data=synthetic_gmm",
        "data.n=2000",
        "model.components=3",
        "model.form=enumerated",
        "trainer.elbo=traceenum",
        "trainer.sampling=replacement",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "test/ari" in result.stdout and "fit/max_error_locs" in result.stdout


def test_a_sweep_with_bad_jobs_is_refused_before_its_first_job_naming_each(tmp_path):
    sweep = tmp_path / "sweep"
    result = zoo("-m", *FAST, "trainer.epochs=0,1", "seed=0,-1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "3 of its 4 jobs" in result.stderr
    assert "job 0 (trainer.epochs=0 seed=0): trainer.epochs = 0 is not valid" in result.stderr
    assert "job 3 (trainer.epochs=1 seed=-1): seed = -1 is not valid" in result.stderr
    assert "job 2 (" not in result.stderr  # the good job is not named
    assert not sweep.exists()  # nothing ran, not even the good job


def test_a_group_option_that_is_a_path_is_refused(tmp_path):
    outside = tmp_path / "evil.yaml"
    outside.write_text("# @package _global_\nseed: 5\n")
    result = zoo(f"experiment=../../../../../../..{outside.with_suffix('')}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "experiment = " in result.stderr and "not a path; valid: bnn_fashion_mnist" in result.stderr
    assert not (tmp_path / "outputs").exists()
