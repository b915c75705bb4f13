"""A NaN or infinite step stops the run with the epoch and step and keeps the last good
checkpoint; trainer.skip_nonfinite=N skips up to N such steps, each logged and counted."""

import json
import logging
import math

import pytest
from faultkit import MODELS_UNDER_TEST, TINY, compose_config, zoo

from zoo.app import run
from zoo.checkpoint import load_checkpoint
from zoo.data import load_dataset
from zoo.errors import TrainingDiverged
from zoo.train import GuardedSVI, Trainer


def steps_per_epoch(cfg):
    return len(load_dataset(cfg.data.name).train_x) // cfg.trainer.batch_size


def nan_at(monkeypatch, calls):
    """The loss of the given SVI steps (counted from 1 over the run) becomes NaN."""
    init = GuardedSVI.__init__
    count = [0]

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        real = self.loss_and_grads  # SVI sets it per instance

        def loss_and_grads(*args, **kwargs):
            count[0] += 1
            loss = real(*args, **kwargs)
            return math.nan if count[0] in calls else loss

        self.loss_and_grads = loss_and_grads

    monkeypatch.setattr(GuardedSVI, "__init__", patched_init)


def test_a_nan_step_stops_with_epoch_and_step_and_keeps_the_checkpoint(
    model_args, tmp_path, monkeypatch
):
    cfg = compose_config([*model_args, *TINY])
    steps = steps_per_epoch(cfg)
    nan_at(monkeypatch, {steps + 2})
    with pytest.raises(TrainingDiverged) as error:
        run(cfg, tmp_path)
    message = str(error.value)
    assert f"loss became nan at epoch 2, step 2 of {steps}" in message
    assert f"{tmp_path / 'checkpoint.pt'} is kept" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "summary.json").exists()


def test_skip_nonfinite_skips_bad_steps_and_counts_them(model_args, tmp_path, monkeypatch, caplog):
    cfg = compose_config([*model_args, *TINY, "trainer.skip_nonfinite=2"])
    steps = steps_per_epoch(cfg)
    nan_at(monkeypatch, {2, 2 * steps + 1})
    with caplog.at_level(logging.WARNING, logger="zoo.train"):
        summary = run(cfg, tmp_path)
    assert caplog.text.count("step skipped") == 2
    assert "epoch 1, step 2" in caplog.text and f"epoch 3, step 1 of {steps}" in caplog.text
    assert summary["train"]["train/skipped_steps"] == 1  # the last epoch's
    assert all(math.isfinite(v) for v in summary["metrics"].values() if isinstance(v, float))


def test_more_bad_steps_than_allowed_stop_the_run(model_args, tmp_path, monkeypatch):
    nan_at(monkeypatch, {1, 3})
    with pytest.raises(TrainingDiverged, match="epoch 1, step 3"):
        run(compose_config([*model_args, *TINY, "trainer.skip_nonfinite=1"]), tmp_path)


def test_a_diverging_run_stops_through_the_cli(model_args, tmp_path):
    result = zoo(
        *model_args, *TINY, "optim.optim_args.lr=1e30", f"hydra.run.dir={tmp_path}/r", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "zoo: error: the loss became" in result.stderr and "at epoch 1, step" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_epoch_that_skips_most_of_its_steps_stops_the_run(model_args, tmp_path, monkeypatch):
    cfg = compose_config([*model_args, *TINY, "trainer.skip_nonfinite=1000"])
    steps = steps_per_epoch(cfg)
    nan_at(monkeypatch, set(range(steps + 1, 2 * steps + 1)))  # every step of epoch 2
    with pytest.raises(TrainingDiverged) as error:
        run(cfg, tmp_path)
    # it stops at the first skip past half of the epoch, not at the end of the run
    assert f"{steps // 2 + 1} of the {steps} steps of epoch 2 were skipped" in str(error.value)
    assert f"{tmp_path / 'checkpoint.pt'} is kept" in str(error.value)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_metrics_jsonl_writes_nan_and_infinity_as_null(tmp_path, monkeypatch):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    monkeypatch.setattr(
        Trainer, "_evaluate", lambda self: {"test/elbo": math.nan, "test/kl": -math.inf}
    )
    gmm = next(args for args in MODELS_UNDER_TEST if args[0] == "model=gmm")
    run(compose_config([*gmm, *TINY, "trainer.eval_every=1"]), tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=refuse) for line in lines]
    assert len(records) == 3
    assert all(r["test/elbo"] is None and r["test/kl"] is None for r in records)
