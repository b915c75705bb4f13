"""Configs: every group option composes, bad values stop with the key and what is valid,
and run(cfg) works without the CLI."""

import json
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from zoo.__main__ import config_dir
from zoo.app import build_optim, run
from zoo.config import check_config, config_hash
from zoo.errors import ConfigError
from zoo.optim import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS, SingleOptim

CONF = Path(config_dir())
GROUPS = ["model", "data", "optim", "trainer", "anneal", "experiment"]


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def group_options():
    for group in GROUPS:
        for path in sorted((CONF / group).glob("*.yaml")):
            yield f"{group}={path.stem}"


@pytest.mark.parametrize("override", list(group_options()))
def test_every_group_option_composes_and_passes_the_checks(override):
    cfg = compose_config([override])
    check_config(cfg)


def test_local_parallel_launcher_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["hydra/launcher=local_parallel"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_composes_into_a_valid_sbatch_script(tmp_path, monkeypatch):
    """No cluster here: compose the launcher, instantiate it, hand its parameters to
    submitit's Slurm executor as the plugin does (which refuses unknown ones) and read the
    sbatch script it would submit. A stand-in ``srun`` on PATH lets the executor start."""
    submitit = pytest.importorskip("submitit")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    sweep_dir = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}"],
            return_hydra_config=True,
        )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = dict(launcher.params)
    assert params["submitit_folder"] == f"{sweep_dir}/.submitit/%j"

    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            key if key in shared else f"slurm_{key}": value
            for key, value in params.items()
            if key not in {"submitit_folder", "max_num_timeout"}
        }
    )
    script = executor._executor._make_submission_file_text("python -m zoo", "uid")
    for line in ["--time=120", "--cpus-per-task=4", "--mem=16GB", "--nodes=1", "--gpus-per-node=0"]:
        assert f"#SBATCH {line}\n" in script


def test_experiment_presets_set_their_groups():
    cfg = compose_config(["experiment=vae_fashion_mnist"])
    assert (cfg.model.name, cfg.data.name, cfg.model.latent_dim, list(cfg.model.hidden_dims)) == (
        "vae",
        "fashion_mnist",
        50,
        [400],
    )


def test_a_model_file_sets_its_data_trainer_and_optim_defaults():
    cfg = compose_config(["model=gmm"])
    assert (cfg.data.name, cfg.trainer.batch_size, cfg.optim.optim_args.lr) == (
        "old_faithful",
        64,
        0.02,
    )
    cfg = compose_config(["model=gmm", "data=synthetic_gmm", "trainer.batch_size=32"])
    assert (cfg.data.name, cfg.trainer.batch_size) == ("synthetic_gmm", 32)
    cfg = compose_config(["experiment=gmm_synthetic_1m"])
    assert (cfg.data.n, cfg.model.components, cfg.trainer.sampling) == (
        1_000_000,
        4,
        "replacement",
    )


def test_an_experiment_can_override_a_top_level_value():
    """_self_ first in the defaults: values set by a preset win over config.yaml's."""
    cfg = compose_config(["experiment=vae_mnist"])
    assert cfg.trainer.epochs == 50


BAD_VALUES = [
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=-3", "trainer.epochs"),
    ("trainer.epochs=2.5", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("trainer.elbo=tracee", "trainer.elbo"),
    ("trainer.num_particles=0", "trainer.num_particles"),
    ("trainer.sampling=shuffle", "trainer.sampling"),
    ("optim.optim_args.lr=-0.001", "optim.optim_args.lr"),
    ("optim.optim_args.lr=0", "optim.optim_args.lr"),
    ("optim.optim_args.lr=fast", "optim.optim_args.lr"),
    ("optim.implementation=cuda_graph", "optim.implementation"),
    ("anneal=linear anneal.beta_min=1.5", "anneal.beta_min"),
    ("anneal=linear anneal.warmup_epochs=-1", "anneal.warmup_epochs"),
    ("anneal=cyclical anneal.ramp=0", "anneal.ramp"),
    ("anneal.per=batch", "anneal.per"),
    ("seed=-1", "seed"),
    ("device=tpu", "device"),
    ("data.root=/no/such/folder", "data.root"),
]


@pytest.mark.parametrize("override,key", BAD_VALUES)
def test_bad_values_name_the_key_and_what_is_valid(override, key):
    cfg = compose_config(override.split())
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    message = str(error.value)
    assert message.startswith(key) and "valid" in message
    assert "\n" not in message


def test_config_hash_ignores_resume_and_progress_but_not_values():
    base = compose_config()
    assert config_hash(base) == config_hash(
        compose_config(["resume=true", "trainer.progress=false"])
    )
    assert config_hash(base) != config_hash(compose_config(["trainer.epochs=3"]))


def tiny(cfg):
    with open_dict(cfg):
        cfg.trainer.epochs = 2
        cfg.trainer.progress = False
        cfg.trainer.validate = True
        cfg.model.evaluation.iw_samples = 20
    return cfg


def test_run_writes_config_metrics_summary_checkpoint_and_figures(tmp_path):
    summary = run(tiny(compose_config(["anneal=linear", "anneal.warmup_epochs=2"])), tmp_path)
    for name in ["config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"]:
        assert (tmp_path / name).is_file(), name
    assert set(summary["figures"]) == {"reconstructions", "prior_samples", "elbo_curve"}
    assert all(Path(p).stat().st_size > 1000 for p in summary["figures"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"] == summary["metrics"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[0]["beta"] < lines[1]["beta"] <= 1
    assert {"test/elbo", "test/reconstruction", "test/kl"} <= set(lines[-1])
    metrics = summary["metrics"]
    assert metrics["test/elbo"] == pytest.approx(
        metrics["test/reconstruction"] - metrics["test/kl"]
    )
    assert metrics["test/log_px"] >= metrics["test/elbo"] - 0.5  # IW bound is tighter, up to noise
    assert summary["seed"] == 0 and summary["versions"]["pyro"]


def test_latent_scatter_when_the_latent_is_2d(tmp_path):
    cfg = tiny(compose_config(["model.latent_dim=2"]))
    assert "latent_scatter" in run(cfg, tmp_path)["figures"]


def test_threads_setting_sets_torch_threads_and_the_summary_records_time_and_memory(tmp_path):
    before = torch.get_num_threads()
    try:
        summary = run(tiny(compose_config(["threads=1"])), tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert summary["config"]["threads"] == 1
    times = summary["time"]
    assert times["fit_s"] == pytest.approx(times["build_s"] + times["train_s"])
    assert times["run_s"] >= times["fit_s"] > 0
    assert summary["resources"]["peak_rss_mb"] > 50  # torch alone holds more


def test_unknown_model_setting_is_a_config_error(tmp_path):
    cfg = tiny(compose_config(["+model.depth=3"]))
    with pytest.raises(ConfigError, match="depth"):
        run(cfg, tmp_path)


def test_the_default_optim_is_one_torch_adam_over_all_parameters():
    cfg = compose_config()
    assert cfg.optim.implementation == DEFAULT_IMPLEMENTATION
    optim = build_optim(cfg)
    assert isinstance(optim, SingleOptim)
    assert optim.implementation == IMPLEMENTATIONS[DEFAULT_IMPLEMENTATION]
    per_parameter = build_optim(compose_config(["optim.implementation=per_parameter"]))
    assert not isinstance(per_parameter, SingleOptim)
