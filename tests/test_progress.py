"""Progress bars: drawn on a terminal when the run allows them, never into a log or a pipe,
and never changing a number."""

import io

import pyro
import torch

from zoo.data import load_dataset
from zoo.models import BNN, VAE
from zoo.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def screen(monkeypatch, cls=Terminal):
    """A fake stderr, set inside the test: pytest's capture would replace one set by a
    fixture before the test's body runs."""
    fake = cls()
    monkeypatch.setattr("sys.stderr", fake)
    return fake


def test_a_bar_is_drawn_on_a_terminal_only_when_enabled(monkeypatch):
    screen_tty = screen(monkeypatch)
    assert list(progress_bar(range(3), desc="work", enabled=False)) == [0, 1, 2]
    assert screen_tty.getvalue() == ""
    assert list(progress_bar(range(3), desc="work", total=3)) == [0, 1, 2]
    assert "work" in screen_tty.getvalue() and "0/3" in screen_tty.getvalue()


def test_no_bar_goes_into_a_pipe_or_a_log(monkeypatch):
    screen_pipe = screen(monkeypatch, io.StringIO)
    list(progress_bar(range(3), desc="work"))
    assert screen_pipe.getvalue() == ""


def evaluate_with_and_without_a_bar(model, data, **settings):
    # an autoguide's first call traces the model once, drawing from the RNG: not compared
    model.evaluate(data, **settings)
    results = []
    for progress in (False, True):
        torch.manual_seed(0)
        results.append(model.evaluate(data, progress=progress, **settings))
    return results


def test_the_vae_evaluation_shows_its_test_batches_and_keeps_its_numbers(monkeypatch):
    screen_tty = screen(monkeypatch)
    vae = VAE(64, latent_dim=2, hidden_dims=[8])
    quiet, shown = evaluate_with_and_without_a_bar(
        vae, load_dataset("digits"), iw_samples=5, batch_size=100
    )
    assert quiet == shown
    assert "test:   0%" in screen_tty.getvalue() and "0/4" in screen_tty.getvalue()  # 360 / 100


def test_the_bnn_evaluation_shows_its_weight_draws_and_keeps_its_numbers(monkeypatch):
    screen_tty = screen(monkeypatch)
    pyro.set_rng_seed(0)
    bnn = BNN(1, 1, hidden_dims=[4], likelihood="normal")
    quiet, shown = evaluate_with_and_without_a_bar(
        bnn, load_dataset("toy_regression", n_train=32, n_test=16), num_samples=7
    )
    assert quiet == shown
    assert "test draws" in screen_tty.getvalue() and "0/7" in screen_tty.getvalue()
