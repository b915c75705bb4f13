"""``trainer.skip_nonfinite=N`` is a budget over the run, not per epoch: skips of earlier
epochs count. And the exact words of the two refusals a run can meet mid-training: more
than half of an epoch skipped, and a beta that changes under ``JitTrace_ELBO``."""

import logging
import math

import pyro
import pytest

from zoo.data import load_dataset
from zoo.errors import TrainingDiverged
from zoo.models import VAE
from zoo.optim import Adam
from zoo.schedules import make_schedule
from zoo.train import Trainer, TrainSettings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def make_trainer(data, out_dir=None, schedule=None, **settings):
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[8])
    settings = TrainSettings(**{"batch_size": 256, "progress": False, **settings})
    return Trainer(model, data, Adam({"lr": 1e-2}), settings, schedule=schedule, out_dir=out_dir)


def nan_at(trainer, steps):
    """The loss of these steps (counted from 1 over the run) becomes NaN."""
    real, count = trainer.svi.loss_and_grads, [0]

    def loss_and_grads(*args, **kwargs):
        count[0] += 1
        loss = real(*args, **kwargs)
        return math.nan if count[0] in steps else loss

    trainer.svi.loss_and_grads = loss_and_grads


def test_skips_of_earlier_epochs_count_against_the_budget(digits, caplog):
    """One NaN step in each of three epochs, two skips allowed: the third stops the run
    (5 steps of 256 per epoch); each skip's warning counts the run's skips so far."""
    trainer = make_trainer(digits, epochs=3, skip_nonfinite=2)
    steps = trainer.steps_per_epoch
    nan_at(trainer, {1, steps + 1, 2 * steps + 1})
    with caplog.at_level(logging.WARNING, logger="zoo.train"), pytest.raises(
        TrainingDiverged
    ) as stopped:
        trainer.fit()
    assert [h["train/skipped_steps"] for h in trainer.history] == [1, 1]
    assert caplog.messages == [
        f"the loss became nan at epoch {epoch}, step 1 of {steps}: step skipped, parameters "
        f"unchanged ({epoch} of at most 2 skips)"
        for epoch in (1, 2)
    ]
    assert str(stopped.value) == (
        f"the loss became nan at epoch 3, step 1 of {steps}. Try a smaller optim lr, gradient "
        "clipping (optim=clipped_adam) or a longer warm-up; trainer.skip_nonfinite=N skips up "
        "to N such steps."
    )


def test_a_nan_gradient_with_a_finite_loss_is_named_as_such(digits):
    trainer = make_trainer(digits, epochs=1)
    real = trainer.svi.loss_and_grads

    def nan_gradient(*args, **kwargs):
        loss = real(*args, **kwargs)
        for p in pyro.get_param_store().values():
            if p.unconstrained().grad is not None:
                p.unconstrained().grad.fill_(math.nan)
                break
        return loss

    trainer.svi.loss_and_grads = nan_gradient
    with pytest.raises(TrainingDiverged) as stopped:
        trainer.fit()
    assert str(stopped.value).startswith("a gradient became NaN or infinite (loss ")
    assert f") at epoch 1, step 1 of {trainer.steps_per_epoch}. Try" in str(stopped.value)


def test_an_epoch_that_skips_most_of_its_steps_stops_in_these_words(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path, epochs=2, skip_nonfinite=100)
    steps = trainer.steps_per_epoch
    nan_at(trainer, set(range(steps + 1, 2 * steps + 1)))
    with pytest.raises(TrainingDiverged) as stopped:
        trainer.fit()
    assert str(stopped.value) == (
        f"{steps // 2 + 1} of the {steps} steps of epoch 2 were skipped as NaN or infinite: "
        "more than half of an epoch, so training is not making progress; the last good "
        f"checkpoint {tmp_path / 'checkpoint.pt'} is kept. Try a smaller optim lr, gradient "
        "clipping (optim=clipped_adam) or a longer warm-up; trainer.skip_nonfinite is meant "
        "for rare bad steps."
    )


def test_a_beta_that_moves_under_jit_is_refused_in_these_words(digits):
    schedule = make_schedule("linear", warmup_epochs=3)
    trainer = make_trainer(digits, schedule=schedule, epochs=2, batch_size=512, elbo="jit")
    with pytest.raises(ValueError) as refused:
        trainer.fit()
    second = schedule(0, 1, trainer.steps_per_epoch)
    assert str(refused.value) == (
        f"beta changed from 0.0 to {second} under JitTrace_ELBO, which compiled the first "
        "value into its graph: anneal with Trace_ELBO or TraceMeanField_ELBO "
        "(trainer.elbo=trace or meanfield)"
    )
