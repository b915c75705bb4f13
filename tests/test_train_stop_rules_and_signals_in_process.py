"""The trainer's stopping rule under a KL warm-up, and the step a signal names, in the pytest
process (mutation testing sees only in-process calls)."""

import os
import signal

import pyro
import pytest

from zoo.data import load_dataset
from zoo.errors import Interrupted
from zoo.models import VAE
from zoo.optim import Adam
from zoo.schedules import make_schedule
from zoo.stopping import StopSettings
from zoo.train import Trainer, TrainSettings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def trainer(data, out_dir, stop=None, schedule=None, epochs=4):
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[16])
    settings = TrainSettings(
        epochs=epochs, batch_size=256, progress=False, stop=stop or StopSettings()
    )
    return Trainer(model, data, Adam({"lr": 1e-2}), settings, schedule=schedule, out_dir=out_dir)


def test_no_window_of_a_warm_up_counts_towards_convergence(digits, tmp_path):
    # beta rises every step for 2 epochs (10 steps), then stays 1: with windows of one step
    # and any change allowed, the rule fires at the 2nd step at beta 1, step 12
    t = trainer(
        digits,
        tmp_path,
        StopSettings(tol=1.0, window=1),
        schedule=make_schedule("linear", warmup_epochs=2),
    )
    t.fit()
    assert [h["beta"] < 1 for h in t.history[:2]] == [True, True]
    assert t.stopped["reason"] == "converged" and t.stopped["steps"] == 12


def test_a_signal_in_an_epoch_names_its_step_and_the_kept_checkpoint(digits, tmp_path):
    t = trainer(digits, tmp_path)
    step, calls = t.svi.step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        loss = step(*args, **kwargs)
        if len(calls) == 8:  # epoch 2, step 3 of 5
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    t.svi.step = step_then_signal
    with pytest.raises(Interrupted) as stopped:
        t.fit()
    message = str(stopped.value)
    assert "interrupted by SIGINT at epoch 2, step 3 of 5" in message
    assert f"the checkpoint of epoch 1 is {tmp_path / 'checkpoint.pt'}" in message
    assert stopped.value.exit_code == 130 and t.epoch == 1 and len(calls) == 8


def test_a_state_given_in_memory_is_named_as_such_when_it_does_not_fit(digits, tmp_path):
    from zoo.checkpoint import UnusableCheckpoint

    t = trainer(digits, tmp_path, epochs=1)
    t.fit()
    state = t.state()
    state["epoch"] = -1
    with pytest.raises(UnusableCheckpoint, match=r"checkpoint <state> does not fit this run"):
        trainer(digits, tmp_path / "other").load_state(state)
