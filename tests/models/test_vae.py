"""The VAE: shapes, binarization, and that its model and guide agree."""

import pyro
import pytest
import torch
from pyro import poutine

from zoo.data import load_dataset
from zoo.models import VAE


def test_model_and_guide_sites_and_shapes():
    vae = VAE(64, latent_dim=3, hidden_dims=[20, 10])
    x = torch.bernoulli(torch.rand(5, 64))
    guide_trace = poutine.trace(vae.guide).get_trace(x, size=100)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, size=100)
    assert guide_trace.nodes["z"]["value"].shape == (5, 3)
    assert model_trace.nodes["x"]["fn"].base_dist.logits.shape == (5, 64)
    assert model_trace.nodes["z"]["scale"] == 20.0 == guide_trace.nodes["z"]["scale"]


def test_test_binarization_is_fixed_and_training_binarization_is_fresh():
    x = torch.rand(50, 64)
    assert torch.equal(VAE.test_inputs(x), VAE.test_inputs(x))
    vae = VAE(64)
    assert not torch.equal(vae.prepare_epoch(x), vae.prepare_epoch(x))
    assert set(vae.prepare_epoch(x).unique().tolist()) == {0.0, 1.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_test_set_is_binarized_the_same_on_a_gpu():
    x = torch.rand(50, 64)
    on_gpu = VAE.test_inputs(x.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), VAE.test_inputs(x))


def test_softplus_scale_is_positive_and_differs_from_exp():
    x = torch.bernoulli(torch.rand(4, 64))
    pyro.set_rng_seed(0)
    exp_vae = VAE(64, latent_dim=2, scale="exp")
    pyro.set_rng_seed(0)
    softplus_vae = VAE(64, latent_dim=2, scale="softplus")
    exp_scale = exp_vae.encoder.distribution(x).base_dist.scale
    softplus_scale = softplus_vae.encoder.distribution(x).base_dist.scale
    assert (softplus_scale > 0).all() and not torch.allclose(exp_scale, softplus_scale)


def test_evaluate_reports_elbo_parts_log_px_and_active_units():
    data = load_dataset("digits")
    vae = VAE(64, latent_dim=4, hidden_dims=[16])
    metrics = vae.evaluate(data, iw_samples=10, batch_size=100)
    assert metrics["test/elbo"] < metrics["test/log_px"] < 0
    assert 0 <= metrics["test/active_units"] <= 4
    assert metrics["test/iw_samples"] == 10


def test_encoder_and_decoder_have_one_activation_between_linear_layers():
    vae = VAE(64, latent_dim=3, hidden_dims=[20, 10])
    kinds = [type(m).__name__ for m in vae.encoder.encoder.net]
    assert kinds == ["Linear", "Softplus", "Linear", "Softplus", "Linear"]
    assert [type(m).__name__ for m in vae.decoder] == kinds
