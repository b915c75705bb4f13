"""The experiment trackers of the logger group, read back with each library's own reader:
the TensorBoard and MLflow runs of a two-epoch job hold the same per-epoch numbers as its
metrics.jsonl, and its figures and summary; a tracker that is not installed is refused before
training, naming the extra; the logger is no part of a run's identity."""

import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from zoo_subprocess import zoo

from zoo.config import validate
from zoo.errors import ConfigError
from zoo.loggers import MLflowSettings, make_logger

CONF = Path(__file__).resolve().parents[1] / "conf"
JOB = ["model=vae", "trainer.epochs=2", "model.evaluation.iw_samples=10", "trainer.progress=false"]


def epochs_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def numbers(record: dict) -> dict:
    return {
        k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def test_tensorboard_holds_each_epochs_numbers_the_figures_and_the_summary(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = zoo(*JOB, "logger=tensorboard", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    records = epochs_of(run)
    assert len(records) == 2
    for epoch, record in enumerate(records, start=1):
        for key, value in numbers(record).items():
            logged = {e.step: e.value for e in events.Scalars(key)}
            assert logged[epoch] == pytest.approx(value, rel=1e-6), key
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(events.Tags()["images"]) == sorted(f"figures/{n}" for n in summary["figures"])
    assert "summary/text_summary" in events.Tags()["tensors"]


def test_mlflow_holds_each_epochs_numbers_the_settings_the_summary_and_the_figures(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    result = zoo(*JOB, "logger=mlflow", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the default: in the folder it started from
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "zoo"]
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.info.run_name == "run" and tracked.data.params["trainer.epochs"] == "2"
    for epoch, record in enumerate(epochs_of(run), start=1):
        for key, value in numbers(record).items():
            history = {m.step: m.value for m in client.get_metric_history(tracked.info.run_id, key)}
            assert history[epoch] == pytest.approx(value, rel=1e-6), key
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    figures = {a.path for a in client.list_artifacts(tracked.info.run_id, "figures")}
    summary = json.loads((run / "summary.json").read_text())
    assert "summary.json" in artifacts
    assert figures == {f"figures/{Path(p).name}" for p in summary["figures"].values()}
    # the artifacts sit beside the database, not in the folder of the run
    assert (tmp_path / "mlartifacts").is_dir()


def test_a_tracker_that_is_not_installed_is_refused_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(
        ConfigError, match=r'logger=mlflow needs mlflow.*pip install -e "\.\[trackers\]"'
    ):
        make_logger(MLflowSettings(), tmp_path)


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_the_logger_is_no_part_of_a_runs_identity():
    hashes = {
        validate(config(f"logger={name}")).identity_hash("cpu")
        for name in ("jsonl", "tensorboard", "mlflow")
    }
    assert len(hashes) == 1
    # a config saved before the logger group existed validates, with the same identity
    from omegaconf import OmegaConf

    old = OmegaConf.to_container(config(), resolve=True)
    old.pop("logger")
    spec = validate(old)
    assert spec.logger.name == "jsonl" and spec.identity_hash("cpu") in hashes


def test_identities_recorded_before_the_logger_group_are_unchanged():
    import zoo.pretrained

    for name in zoo.pretrained.names():  # their summaries were written before the group
        card = zoo.pretrained.card(name)
        assert validate(card["config"]).identity_hash("cpu") == card["config_hash"], name
