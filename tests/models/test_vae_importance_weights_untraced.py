"""The VAE's untraced importance weights (the fast path of its K-sample log p(x)) are the
traced weights of its model and guide: the same draws from the same random stream, the same
numbers up to rounding, chunk by chunk and in the final estimate."""

import pyro
import pytest
import torch

from zoo.data import load_dataset
from zoo.metrics import _traced_log_weights, importance_log_likelihood
from zoo.models import VAE


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("scale", ["exp", "softplus"])
def test_the_untraced_weights_are_the_traced_weights_draw_for_draw(digits, scale):
    pyro.set_rng_seed(0)
    vae = VAE(digits.num_features, latent_dim=3, hidden_dims=[16], scale=scale)
    x = vae.test_inputs(digits.test_x[:40])
    with torch.no_grad():
        vae.guide(x)  # its first call traces the model (random draws), as training does
        torch.manual_seed(1)
        traced = _traced_log_weights(vae.model, vae.guide, x, 7)
        torch.manual_seed(1)
        untraced = vae.importance_log_weights(x, 7)
    assert untraced.shape == (7, 40)
    torch.testing.assert_close(untraced, traced, rtol=1e-5, atol=1e-4)


def test_the_estimate_is_the_same_with_either_path_and_any_chunks(digits):
    pyro.set_rng_seed(0)
    vae = VAE(digits.num_features, latent_dim=3, hidden_dims=[16])
    x = vae.test_inputs(digits.test_x[:30])
    with torch.no_grad():
        vae.guide(x)
        torch.manual_seed(2)
        traced = importance_log_likelihood(vae.model, vae.guide, x, num_samples=9, chunk_size=4)
        torch.manual_seed(2)
        untraced = importance_log_likelihood(
            vae.model,
            vae.guide,
            x,
            num_samples=9,
            chunk_size=4,
            log_weights=vae.importance_log_weights,
        )
    torch.testing.assert_close(untraced, traced, rtol=1e-5, atol=1e-4)
    # and it is an estimate of log p(x) below which the one-sample ELBO lies on average
    assert untraced.shape == (30,) and torch.isfinite(untraced).all()


def test_evaluate_uses_the_untraced_path(digits, monkeypatch):
    pyro.set_rng_seed(0)
    vae = VAE(digits.num_features, latent_dim=3, hidden_dims=[16])
    calls = []
    original = vae.importance_log_weights

    def counted(x, k):
        calls.append((len(x), k))
        return original(x, k)

    monkeypatch.setattr(vae, "importance_log_weights", counted)
    metrics = vae.evaluate(digits, iw_samples=50, batch_size=100)
    assert calls and sum(k for n, k in calls if n == 100) == 50 * 3  # 360 test rows: 3 full batches
    assert metrics["test/log_px"] >= metrics["test/elbo"] - 1.0
