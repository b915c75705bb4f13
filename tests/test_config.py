"""Configs: every group option composes, bad values stop with the key and what is valid,
and run(cfg) works without the CLI."""

import json
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from zoo.__main__ import config_dir
from zoo.app import run
from zoo.config import config_hash, validate
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
    validate(cfg)


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
        None,  # full batch
        0.002,
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
        validate(cfg)
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
    optim = validate(cfg).optim.build()
    assert isinstance(optim, SingleOptim)
    assert optim.implementation == IMPLEMENTATIONS[DEFAULT_IMPLEMENTATION]
    per_parameter = validate(compose_config(["optim.implementation=per_parameter"])).optim.build()
    assert not isinstance(per_parameter, SingleOptim)


# ---- the settings classes: every setting typed, described and range-checked ----------------

from typing import Literal  # noqa: E402

from annotated_types import Ge, Gt, Le, Lt  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from zoo.config import CHOSEN_BY, RunSettings, compare_runs  # noqa: E402
from zoo.schema import Settings  # noqa: E402
from zoo.train import TrainSettings  # noqa: E402


def settings_classes():
    """Every settings class a config is checked against, nested ones included."""
    found, todo = [], [RunSettings, TrainSettings]
    for _, classes in CHOSEN_BY.values():
        todo.extend(classes.values())
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        for info in cls.model_fields.values():
            for sub in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, Settings):
                    todo.append(sub)
    return sorted(found, key=lambda c: c.__name__)


def fields():
    for cls in settings_classes():
        for name, info in cls.model_fields.items():
            yield pytest.param(cls, name, info, id=f"{cls.__name__}.{name}")


def test_the_settings_classes_cover_every_component():
    names = {cls.__name__ for cls in settings_classes()}
    assert {"RunSettings", "TrainSettings", "VAESettings", "GMMSettings", "BNNSettings"} <= names
    assert {"BNNEvaluation", "AdamArguments", "OldFaithfulSettings", "CyclicalSettings"} <= names


@pytest.mark.parametrize("cls,name,info", list(fields()))
def test_every_setting_says_what_is_valid(cls, name, info):
    """A setting added without ``setting(..., valid)`` has no text for its error message."""
    if getattr(info.annotation, "__origin__", None) is Literal and len(info.annotation.__args__) == 1:
        return  # a tag (model.name = 'vae'): it picks the class, a wrong one never reaches it
    assert info.description, f"{cls.__name__}.{name} has no description of its valid values"


def bounds(info):
    low = high = None
    low_open = high_open = False
    for m in info.metadata:
        if isinstance(m, Ge):
            low = m.ge
        elif isinstance(m, Gt):
            low, low_open = m.gt, True
        elif isinstance(m, Le):
            high = m.le
        elif isinstance(m, Lt):
            high, high_open = m.lt, True
    return low, low_open, high, high_open


def within(value, info):
    low, low_open, high, high_open = bounds(info)
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return high is None or not (value > high or (high_open and value == high))


def scalar_fields(kind):
    for cls, name, info in (p.values for p in fields()):
        if info.annotation is kind or info.annotation == (kind | None):
            yield pytest.param(cls, name, info, id=f"{cls.__name__}.{name}")


def accepts(cls, name, value):
    """Whether ``cls`` takes ``value`` for ``name`` (its other settings at their defaults,
    the required ones filled in from a valid example)."""
    base = {k: v for k, v in EXAMPLES.get(cls.__name__, {}).items() if k != name}
    try:
        cls.model_validate({**base, name: value})
    except ValidationError as e:
        keys = {name, cls.model_fields[name].alias}
        return not any(err["loc"][:1] and err["loc"][0] in keys for err in e.errors())
    return True


# valid values of the settings that have no default (and of those another one is checked against)
EXAMPLES = {
    "LinearSettings": {"warmup_epochs": 10.0},
    "SigmoidSettings": {"warmup_epochs": 10.0},
    "CyclicalSettings": {"total_epochs": 10.0},
    "OldFaithfulSettings": {"folds": 272, "fold": 0},
    "ToyRegressionSettings": {"x_min": -1e300, "x_max": 1e300},
    "SyntheticGMMSettings": {"n": 2**62, "test_fraction": 0.5},
    "GMMSettings": {"components": 1, "init_points": 2**62},
    "BNNSettings": {"init_rho": [-5.0, -4.0]},
}


@pytest.mark.parametrize("cls,name,info", list(scalar_fields(int)))
@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 2**32, 2**63])))
def test_integer_settings_take_exactly_the_integers_in_their_range(cls, name, info, value):
    if cls.__name__ == "OldFaithfulSettings" and name == "fold":
        return  # checked against folds: see test_cross_field_rules
    assert accepts(cls, name, value) == within(value, info)


@pytest.mark.parametrize("cls,name,info", list(scalar_fields(int)))
@settings(max_examples=15, deadline=None)
@given(value=st.one_of(st.floats(), st.booleans(), st.text(max_size=5)))
def test_integer_settings_refuse_floats_bools_and_text(cls, name, info, value):
    assert not accepts(cls, name, value)


@pytest.mark.parametrize("cls,name,info", list(scalar_fields(float)))
@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10)))
def test_number_settings_take_exactly_the_finite_numbers_in_their_range(cls, name, info, value):
    if cls.__name__ in ("ToyRegressionSettings",) and name in ("x_min", "x_max"):
        return  # checked against each other
    finite = value == value and abs(value) != float("inf")
    assert accepts(cls, name, value) == (finite and within(value, info))


@pytest.mark.parametrize("cls,name,info", list(scalar_fields(bool)))
@settings(max_examples=15, deadline=None)
@given(value=st.one_of(st.booleans(), st.integers(0, 1), st.sampled_from(["true", "yes", "maybe"])))
def test_boolean_settings_take_only_true_and_false(cls, name, info, value):
    assert accepts(cls, name, value) == isinstance(value, bool)


def test_cross_field_rules():
    from zoo.data.old_faithful import OldFaithfulSettings
    from zoo.models.bnn import BNNSettings

    assert OldFaithfulSettings(folds=5, fold=4).fold == 4
    with pytest.raises(ValueError, match="0 to 4"):
        OldFaithfulSettings(folds=5, fold=5)
    with pytest.raises(ValueError, match="low <= high"):
        BNNSettings(init_rho=[-4.0, -5.0])
    with pytest.raises(ValueError, match="needs dropout > 0"):
        BNNSettings(guide="mc_dropout")


def test_errors_name_every_bad_key_in_one_paragraph():
    cfg = compose_config(["trainer.epochs=0", "seed=-1", "+optim.optim_args.bets=[0.9,0.9]"])
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    message = str(error.value)
    for key in ("trainer.epochs = 0", "seed = -1", "optim.optim_args.bets is not a setting"):
        assert key in message
    assert "did you mean optim.optim_args.betas?" in message and "\n" not in message


def test_the_identity_leaves_out_exactly_what_cannot_change_the_trained_parameters():
    base = config_hash(compose_config())
    same = [
        "model.evaluation.iw_samples=7",
        "model.periodic_evaluation.iw_samples=3",
        "trainer.eval_every=3",
        "trainer.progress=false",
        "threads=1",
        "resume=true",
        "device=cpu",
    ]
    for override in same:
        assert config_hash(compose_config([override])) == base, override
    for override in ["seed=1", "trainer.epochs=3", "optim.optim_args.lr=0.01", "model.latent_dim=3"]:
        assert config_hash(compose_config([override])) != base, override
    assert config_hash(compose_config(), "cpu") != config_hash(compose_config(), "cuda")


def test_compare_runs_sorts_changes_into_allowed_and_blocking():
    saved = OmegaConf.to_container(compose_config(["trainer.epochs=3"]), resolve=True)
    new = compose_config(["trainer.epochs=5", "model.evaluation.iw_samples=9", "threads=1"])
    comparison = compare_runs(saved, new)
    assert comparison.blocking == {"trainer.epochs": (3, 5)}
    assert comparison.allowed == {"model.evaluation.iw_samples": (5000, 9), "threads": (None, 1)}


def test_a_resume_may_change_evaluation_settings_and_records_them(tmp_path):
    run(tiny(compose_config()), tmp_path)
    with open_dict(cfg := tiny(compose_config(["resume=true", "trainer.epochs=2"]))):
        cfg.model.evaluation.iw_samples = 7
    summary = run(cfg, tmp_path)
    assert summary["resumed_with_changes"] == {"model.evaluation.iw_samples": [20, 7]}
    assert summary["metrics"]["test/iw_samples"] == 7


def test_a_resume_that_would_change_the_training_is_refused_naming_old_and_new(tmp_path):
    run(tiny(compose_config()), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError) as error:
        run(tiny(compose_config(["resume=true", "seed=3", "model.latent_dim=4"])), tmp_path)
    message = str(error.value)
    assert "seed: 0 -> 3" in message and "model.latent_dim: 8 -> 4" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_data_checks_come_before_the_model_is_built(tmp_path, monkeypatch):
    from zoo.models import GMM

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(GMM, "build", classmethod(no_build))
    cfg = compose_config(["model=gmm", "trainer.batch_size=5000", "trainer.progress=false"])
    with pytest.raises(ConfigError, match="exceeds the 218 training rows"):
        run(cfg, tmp_path)
