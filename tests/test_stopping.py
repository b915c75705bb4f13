"""The stopping rules (trainer.stop): by hand on known losses and metrics, through a
checkpoint at any step, and in the trainer: where a run stops, what it records, and that a
stopped run resumes bit-exactly."""

import json
import math

import pyro
import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.__main__ import config_dir
from zoo.app import run
from zoo.config import validate
from zoo.data import load_dataset
from zoo.errors import ConfigError
from zoo.models import VAE
from zoo.optim import Adam
from zoo.stopping import Stopper, StopSettings
from zoo.train import Trainer, TrainSettings

# ---- the convergence rule by hand --------------------------------------------------------


def feed(stopper, losses, betas=None):
    """The rule's answer after each loss."""
    betas = betas or [1.0] * len(losses)
    return [stopper.after_step(loss, beta) for loss, beta in zip(losses, betas)]


def test_converged_when_two_windows_means_differ_by_at_most_tol():
    # window means 10, 9, 8.99: |10 - 9| / 9 = 0.111 > 0.01, |9 - 8.99| / 8.99 = 0.0011
    stopper = Stopper(StopSettings(tol=0.01, window=2))
    answers = feed(stopper, [10.5, 9.5, 9.0, 9.0, 8.98, 9.0])
    assert answers == [None] * 5 + ["converged"]
    assert stopper.reason == "converged" and stopper.steps == 6
    assert "after 6 steps" in stopper.message and "8.99" in stopper.message


def test_the_change_is_relative_to_the_newer_window():
    # means 2 then 1: |2 - 1| / 1 = 1.0 (relative to the newer), not 0.5 (to the older)
    assert feed(Stopper(StopSettings(tol=0.6, window=1)), [2.0, 1.0]) == [None, None]
    assert feed(Stopper(StopSettings(tol=1.0, window=1)), [2.0, 1.0]) == [None, "converged"]


def test_a_negative_loss_uses_its_magnitude():
    # an ELBO above 0 (continuous data): means -100 and -100.5 differ by 0.005 of 100.5
    assert feed(Stopper(StopSettings(tol=0.006, window=1)), [-100.0, -100.5]) == [
        None,
        "converged",
    ]


def test_a_change_of_beta_starts_the_comparison_afresh():
    # without the change, the 2nd window (9, 9) would be compared with the 1st (9, 9)
    stopper = Stopper(StopSettings(tol=0.01, window=2))
    answers = feed(stopper, [9.0, 9.0, 9.0, 9.0, 9.0, 9.0], betas=[0.5, 0.5, 1, 1, 1, 1])
    assert answers == [None, None, None, None, None, "converged"]


def test_min_steps_holds_the_rule_off():
    # every window equals the one before, so only min_steps holds the rule off until step 4
    stopper = Stopper(StopSettings(tol=0.5, window=1, min_steps=4))
    assert feed(stopper, [1.0] * 4) == [None, None, None, "converged"]


def test_no_tol_never_converges():
    assert feed(Stopper(StopSettings()), [1.0] * 500) == [None] * 500


# ---- the patience rule by hand ---------------------------------------------------------


def watch(stopper, values, metric="test/score"):
    return [stopper.after_evaluation({metric: v, "test/other": 0.0}) for v in values]


def test_patience_counts_evaluations_without_a_new_best():
    stopper = Stopper(StopSettings(patience=2, metric="test/score"))
    # best 2 at the 2nd; 2 (equal) and 1.5 are no improvement: stop at the 4th
    assert watch(stopper, [1.0, 2.0, 2.0, 1.5]) == [None, None, None, "patience"]
    assert stopper.best == 2.0 and "has not improved on its best, 2" in stopper.message


def test_an_improvement_resets_the_count():
    stopper = Stopper(StopSettings(patience=2, metric="test/score"))
    assert watch(stopper, [1.0, 0.5, 1.5, 0.5, 0.5]) == [None, None, None, None, "patience"]


def test_mode_min_and_min_delta():
    stopper = Stopper(StopSettings(patience=1, metric="test/score", mode="min", min_delta=0.1))
    # 0.75 is lower than 0.8 by 0.05 only: not an improvement of more than min_delta
    assert watch(stopper, [1.0, 0.8, 0.75]) == [None, None, "patience"]
    assert stopper.best == 0.8


def test_a_nan_metric_is_no_improvement():
    stopper = Stopper(StopSettings(patience=1, metric="test/score"))
    assert watch(stopper, [1.0, math.nan]) == [None, "patience"]


def test_a_missing_metric_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="test/nope"):
        Stopper(StopSettings(patience=1, metric="test/nope")).after_evaluation({"test/a": 1.0})


def test_patience_needs_a_metric():
    with pytest.raises(ValueError, match="trainer.stop.metric"):
        StopSettings(patience=3)


def test_the_config_names_the_key_of_a_patience_without_metric():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.stop.patience=3"])
    with pytest.raises(ConfigError, match=r"trainer\.stop\.metric"):
        validate(cfg)


# ---- the state through a checkpoint at any step ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    losses=st.lists(st.floats(1.0, 2.0), min_size=1, max_size=40),
    cut=st.integers(0, 40),
    window=st.integers(1, 5),
    beta_change=st.integers(0, 40),
)
def test_a_stopper_reloaded_at_any_step_answers_as_one_never_stopped(
    losses, cut, window, beta_change
):
    rule = StopSettings(tol=0.05, window=window)
    betas = [0.5 if i < beta_change else 1.0 for i in range(len(losses))]
    straight = Stopper(rule)
    expected = feed(straight, losses, betas)
    cut = min(cut, len(losses))
    first = Stopper(rule)
    head = feed(first, losses[:cut], betas[:cut])
    # through JSON-like plain values, as in a checkpoint
    second = Stopper(rule)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + feed(second, losses[cut:], betas[cut:]) == expected
    assert second.state_dict() == straight.state_dict()


def test_a_state_without_a_key_is_refused():
    state = Stopper(StopSettings()).state_dict()
    del state["window_sum"]
    with pytest.raises(KeyError, match="window_sum"):
        Stopper(StopSettings()).load_state_dict(state)


# ---- in the trainer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def trainer(data, out_dir, stop, epochs=4, evaluate=None, seed=0):
    pyro.set_rng_seed(seed)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[16])
    settings = TrainSettings(epochs=epochs, batch_size=256, progress=False, eval_every=1, stop=stop)
    return Trainer(
        model,
        data,
        Adam({"lr": 1e-2}),
        settings,
        evaluate=evaluate or (lambda: model.evaluate(data, iw_samples=0)),
        out_dir=out_dir,
        identity={"model": "vae", "config": "test"},
    )


# 1437 training digits, batch 256: 5 steps an epoch. tol 1 with windows of one step converges
# at the first window after min_steps: step 12, the 2nd step of epoch 3
STOP_AT_12 = StopSettings(tol=1.0, window=1, min_steps=12)


def test_the_rule_stops_in_the_middle_of_an_epoch_and_says_so(digits, tmp_path):
    t = trainer(digits, tmp_path, STOP_AT_12)
    history = t.fit()
    assert t.steps_per_epoch == 5
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train/steps"] == 2 and "train/steps" not in history[1]
    assert [h["train/steps_total"] for h in history] == [5, 10, 12]
    assert history[-1]["train/stopped"] == "converged"
    assert "test/elbo" in history[-1]  # the last epoch is evaluated
    assert t.stopped["reason"] == "converged" and t.stopped["steps"] == 12
    assert t.stopped["epochs"] == 3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["train/stopped"] == "converged"


def test_a_run_that_ran_its_epochs_says_so(digits, tmp_path):
    t = trainer(digits, tmp_path, StopSettings(), epochs=2)
    t.fit()
    assert t.stopped == {
        "reason": "epochs",
        "epochs": 2,
        "steps": 10,
        "message": "ran its trainer.epochs = 2 epochs (10 steps)",
    }


def test_a_stopped_run_resumes_bit_exactly(digits, tmp_path):
    straight = trainer(digits, tmp_path / "straight", STOP_AT_12)
    straight.fit()

    # the same run, stopped by its epochs before the rule fired, then resumed
    first = trainer(digits, tmp_path / "stopped", STOP_AT_12, epochs=2)
    first.fit()
    assert first.stopped["reason"] == "epochs"
    pyro.clear_param_store()
    second = trainer(digits, tmp_path / "stopped", STOP_AT_12, seed=7)
    second.resume()
    second.fit()
    timeless = lambda h: {k: v for k, v in h.items() if not k.startswith("time/")}  # noqa: E731
    assert [timeless(h) for h in second.history] == [timeless(h) for h in straight.history]
    assert second.stopped == straight.stopped
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), second.model.state_dict().items()
    ):
        assert torch.equal(a, b), name

    # a converged run resumed trains no further step
    pyro.clear_param_store()
    third = trainer(digits, tmp_path / "stopped", STOP_AT_12)
    third.resume()
    before = {k: v.clone() for k, v in third.model.state_dict().items()}
    assert third.fit() == second.history
    assert all(torch.equal(before[k], v) for k, v in third.model.state_dict().items())


def test_patience_stops_after_that_many_evaluations_without_a_new_best(digits, tmp_path):
    scores = iter([1.0, 3.0, 2.0, 2.5, 9.0, 9.0])
    t = trainer(
        digits,
        tmp_path,
        StopSettings(patience=2, metric="test/score"),
        epochs=6,
        evaluate=lambda: {"test/score": next(scores)},
    )
    history = t.fit()
    assert len(history) == 4 and history[-1]["train/stopped"] == "patience"
    assert t.stopped["steps"] == 20 and "best, 3" in t.stopped["message"]


def test_an_unknown_metric_is_a_config_error_naming_the_ones_there_are(digits, tmp_path):
    t = trainer(digits, tmp_path, StopSettings(patience=2, metric="test/elbow"))
    with pytest.raises(ConfigError, match=r"trainer.stop.metric = 'test/elbow'.*test/elbo"):
        t.fit()


def test_an_unknown_metric_is_refused_even_when_the_loss_rule_stopped_first(digits, tmp_path):
    rules = StopSettings(tol=1.0, window=1, min_steps=3, patience=2, metric="test/elbow")
    t = trainer(digits, tmp_path, rules)
    with pytest.raises(ConfigError, match="test/elbow"):
        t.fit()


def test_the_summary_says_why_training_stopped(tmp_path):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                "model=gmm",
                "trainer.progress=false",
                "trainer.batch_size=64",
                "trainer.stop.tol=1.0",
                "trainer.stop.window=1",
                "trainer.stop.min_steps=7",
                "model.restarts=1",
                "model.restart_steps=2",
                "model.evaluation.mc_samples=2",
            ],
        )
    summary = run(cfg, tmp_path)
    # Old Faithful: 218 training rows, batch 64, 3 steps an epoch: step 7 is in epoch 3
    assert summary["stopped"]["reason"] == "converged" and summary["stopped"]["steps"] == 7
    assert summary["epochs"] == 3 and summary["train"]["train/stopped"] == "converged"
