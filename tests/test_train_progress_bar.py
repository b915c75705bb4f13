"""What the trainer hands its epoch bar: the epoch as ``epoch k/N``, the number of steps, the
run's ``trainer.progress``, and every tenth step the running loss per data point (over the
steps not skipped) and beta,
checked by hand against the losses of the steps (the bar itself: tests/test_progress.py)."""

import math

import pyro
import pytest

import zoo.train
from zoo.data import load_dataset
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


class RecordingBar:
    """Stands in for :func:`zoo.progress.progress_bar`: iterates and records what it is told."""

    def __init__(self, iterable, *, desc, total=None, enabled=True):
        self.iterable, self.desc, self.total, self.enabled = iterable, desc, total, enabled
        self.postfixes: list[str] = []

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix_str(self, text: str) -> None:
        self.postfixes.append(text)


@pytest.fixture
def bars(monkeypatch):
    made: list[RecordingBar] = []

    def progress_bar(iterable, **kwargs):
        made.append(RecordingBar(iterable, **kwargs))
        return made[-1]

    monkeypatch.setattr(zoo.train, "progress_bar", progress_bar)
    return made


def test_each_epoch_bar_shows_the_epoch_the_steps_and_the_running_loss(bars):
    data = load_dataset("digits")
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[8])
    settings = TrainSettings(epochs=2, batch_size=64, progress=False, skip_nonfinite=1)
    trainer = Trainer(model, data, Adam({"lr": 1e-2}), settings)
    real, losses = trainer.svi.loss_and_grads, []

    def recorded(*args, **kwargs):  # the second step of epoch 2 is NaN, and skipped
        losses.append(float(real(*args, **kwargs)) if len(losses) != 23 else math.nan)
        return losses[-1]

    trainer.svi.loss_and_grads = recorded
    trainer.fit()
    steps, n = trainer.steps_per_epoch, len(data.train_x)
    assert steps == 22
    assert [(b.desc, b.total, b.enabled) for b in bars] == [
        ("epoch 1/2", steps, False),
        ("epoch 2/2", steps, False),
    ]
    for epoch, bar in enumerate(bars):
        epoch_losses = losses[epoch * steps : (epoch + 1) * steps]
        expected = []
        for step in (0, 10, 20):
            finite = [loss for loss in epoch_losses[: step + 1] if math.isfinite(loss)]
            expected.append(f"loss/point {sum(finite) / len(finite) / n:.3f} beta 1")
        assert bar.postfixes == expected
