"""An epoch's record by hand: ``train/loss`` is the mean loss per data point over the steps
that were not skipped, and ``time/total_s`` adds up the epochs' ``time/epoch_s``."""

import math

import pyro
import pytest

from zoo.data import load_dataset
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def make_trainer(data, **settings):
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[8])
    settings = TrainSettings(**{"batch_size": 256, "progress": False, **settings})
    return Trainer(model, data, Adam({"lr": 1e-2}), settings)


def test_the_epoch_loss_is_the_mean_over_the_steps_taken_per_data_point(digits):
    """Five steps, the second one NaN and skipped: the mean of the other four, over n."""
    trainer = make_trainer(digits, epochs=1, skip_nonfinite=1)
    real, losses = trainer.svi.loss_and_grads, []

    def second_step_nan(*args, **kwargs):
        loss = float(real(*args, **kwargs))
        losses.append(math.nan if len(losses) == 1 else loss)
        return losses[-1]

    trainer.svi.loss_and_grads = second_step_nan
    (record,) = trainer.fit()
    finite = [loss for loss in losses if math.isfinite(loss)]
    assert len(losses) == trainer.steps_per_epoch == 5 and len(finite) == 4
    assert record["train/loss"] == pytest.approx(sum(finite) / 4 / len(digits.train_x), rel=1e-12)
    assert record["train/skipped_steps"] == 1


def test_the_total_time_adds_up_the_epochs(digits):
    trainer = make_trainer(digits, epochs=3, batch_size=512)
    history = trainer.fit()
    epochs = [h["time/epoch_s"] for h in history]
    assert all(0 < t < 60 for t in epochs)
    assert [h["time/total_s"] for h in history] == pytest.approx(
        [sum(epochs[: i + 1]) for i in range(3)], rel=1e-12
    )
