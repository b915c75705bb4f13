"""The SVI trainer: resume equals uninterrupted, the NaN stop, checkpoint identity."""

import json
import math

import pyro
import pytest
import torch

from zoo.checkpoint import load_checkpoint
from zoo.data import load_dataset
from zoo.errors import CheckpointError, TrainingDiverged
from zoo.models import VAE
from zoo.optim import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS, Adam
from zoo.schedules import make_schedule
from zoo.train import GuardedSVI, Trainer, TrainSettings, all_finite

SETTINGS = TrainSettings(epochs=4, batch_size=256, progress=False, validate=True, eval_every=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def make_trainer(
    data,
    out_dir,
    settings=SETTINGS,
    identity=None,
    seed=0,
    implementation=DEFAULT_IMPLEMENTATION,
    schedule=("linear", {"warmup_epochs": 3}),
):
    pyro.set_rng_seed(seed)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[16])
    return Trainer(
        model,
        data,
        Adam({"lr": 1e-2}, implementation=implementation),
        settings,
        schedule=make_schedule(schedule[0], **schedule[1]),
        evaluate=lambda: model.evaluate(data, iw_samples=0),
        out_dir=out_dir,
        identity=identity or {"model": "vae", "config": "test"},
    )


@pytest.mark.parametrize("implementation", [*IMPLEMENTATIONS, "per_parameter"])
def test_resumed_run_ends_with_the_same_numbers_as_an_uninterrupted_one(
    digits, tmp_path, implementation
):
    straight = make_trainer(digits, tmp_path / "straight", implementation=implementation)
    straight.fit()

    first = make_trainer(
        digits,
        tmp_path / "stopped",
        settings=TrainSettings(**{**vars(SETTINGS), "epochs": 2}),
        implementation=implementation,
    )
    first.fit()
    pyro.clear_param_store()  # as in a new process
    # the seed must not matter
    second = make_trainer(digits, tmp_path / "stopped", seed=123, implementation=implementation)
    second.resume()
    assert second.epoch == 2
    second.fit()

    assert second.history == [
        {**h, "time/epoch_s": s["time/epoch_s"], "time/total_s": s["time/total_s"]}
        for h, s in zip(straight.history, second.history)
    ]
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), second.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    lines = (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(digits, tmp_path):
    trainer = make_trainer(
        digits, tmp_path, settings=TrainSettings(**{**vars(SETTINGS), "epochs": 1})
    )
    trainer.fit()
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        trainer.model.decoder[0].weight.fill_(float("nan"))
    trainer.settings = TrainSettings(**{**vars(SETTINGS), "epochs": 3, "validation": False})
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1 of 5.*checkpoint.pt is kept"):
        trainer.fit()
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_resume_refuses_a_checkpoint_of_another_config(digits, tmp_path):
    make_trainer(digits, tmp_path, settings=TrainSettings(**{**vars(SETTINGS), "epochs": 1})).fit()
    other = make_trainer(digits, tmp_path, identity={"model": "vae", "config": "other"})
    with pytest.raises(CheckpointError, match="belongs to another run"):
        other.resume()


def test_resume_refuses_a_corrupted_checkpoint_naming_the_file(digits, tmp_path):
    make_trainer(digits, tmp_path, settings=TrainSettings(**{**vars(SETTINGS), "epochs": 1})).fit()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(path)):
        make_trainer(digits, tmp_path).resume()


def test_resume_without_a_checkpoint_says_where_it_looked(digits, tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "checkpoint.pt")):
        make_trainer(digits, tmp_path).resume()


def test_two_models_in_one_process_keep_their_own_parameters(digits):
    a = make_trainer(digits, None, settings=TrainSettings(**{**vars(SETTINGS), "epochs": 1}))
    b = make_trainer(digits, None, settings=TrainSettings(**{**vars(SETTINGS), "epochs": 1}))
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    a.fit()
    assert all(torch.equal(before[k], v) for k, v in b.model.state_dict().items())
    b.fit()
    names = set(pyro.get_param_store().keys())
    assert len(names) == len(list(a.model.parameters())) + len(list(b.model.parameters()))
    assert any(not torch.equal(before[k], v) for k, v in b.model.state_dict().items())


def test_resume_equals_uninterrupted_with_minibatches_drawn_with_replacement(digits, tmp_path):
    settings = TrainSettings(**{**vars(SETTINGS), "sampling": "replacement", "epochs": 2})
    straight = make_trainer(digits, tmp_path / "straight", settings=settings)
    straight.fit()
    make_trainer(
        digits, tmp_path / "stopped", settings=TrainSettings(**{**vars(settings), "epochs": 1})
    ).fit()
    pyro.clear_param_store()
    second = make_trainer(digits, tmp_path / "stopped", settings=settings, seed=123)
    second.resume()
    second.fit()
    assert [h["train/loss"] for h in second.history] == [h["train/loss"] for h in straight.history]


def test_unknown_sampling_is_refused(digits):
    with pytest.raises(ValueError, match="sampling"):
        make_trainer(digits, None, settings=TrainSettings(sampling="shuffle"))


def test_batch_larger_than_the_data_is_refused(digits):
    with pytest.raises(ValueError, match="batch_size = 5000 is not valid: it exceeds the 1437"):
        make_trainer(digits, None, settings=TrainSettings(batch_size=5000))


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "jit", "traceenum"])
def test_every_elbo_trains(digits, elbo):
    settings = TrainSettings(epochs=3, batch_size=128, elbo=elbo, progress=False, eval_every=3)
    # a JIT-compiled ELBO holds beta fixed (the next test): no annealing there
    schedule = ("none", {}) if elbo == "jit" else ("linear", {"warmup_epochs": 3})
    history = make_trainer(digits, None, settings=settings, schedule=schedule).fit()
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert history[-1]["test/elbo"] > -45


def test_resume_is_exact_under_jit_too(digits, tmp_path):
    """JitTrace_ELBO's first (compiling) call draws other random numbers than its compiled
    steps; the trainer makes that call outside training, so a resumed run compiles without
    drifting from an uninterrupted one."""
    settings = TrainSettings(**{**vars(SETTINGS), "elbo": "jit", "validation": False})
    plain = ("none", {})
    straight = make_trainer(digits, tmp_path / "straight", settings=settings, schedule=plain)
    straight.fit()
    pyro.clear_param_store()
    two = TrainSettings(**{**vars(settings), "epochs": 2})
    make_trainer(digits, tmp_path / "stopped", settings=two, schedule=plain).fit()
    pyro.clear_param_store()
    resumed = make_trainer(digits, tmp_path / "stopped", settings=settings, seed=5, schedule=plain)
    resumed.resume()
    resumed.fit()
    assert [h["train/loss"] for h in resumed.history] == [h["train/loss"] for h in straight.history]
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        assert torch.equal(a, b), name


def test_jit_refuses_a_beta_that_changes_after_it_was_compiled_into_the_graph(digits):
    settings = TrainSettings(epochs=2, batch_size=128, elbo="jit", progress=False)
    trainer = make_trainer(digits, None, settings=settings)  # linear warm-up: beta moves
    with pytest.raises(ValueError, match="beta changed from 0.0 to .* under JitTrace_ELBO"):
        trainer.fit()


@pytest.mark.parametrize(
    "tensors, expected",
    [
        ([], True),
        ([torch.ones(3), torch.ones(2, 2, dtype=torch.float64)], True),
        ([torch.full((4,), 3e38), torch.ones(2)], True),  # finite, though the sum overflows
        ([torch.ones(3), torch.tensor([1.0, math.nan])], False),
        ([torch.tensor([math.inf, -math.inf])], False),  # the sum is NaN
        ([torch.tensor([-math.inf])], False),
    ],
)
def test_all_finite_is_exact(tensors, expected):
    assert all_finite(tensors) is expected


def test_a_step_with_an_infinite_gradient_leaves_the_parameters_untouched(digits):
    pyro.set_rng_seed(0)
    model = VAE(digits.num_features, latent_dim=2, hidden_dims=[16])
    svi = GuardedSVI(
        model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO()
    )
    x = model.prepare_epoch(digits.train_x[:8])  # binary pixels
    svi.step(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook = model.decoder[0].weight.register_hook(
        lambda g: g.index_fill(0, torch.tensor([0]), math.inf)
    )
    loss = svi.step(x)
    hook.remove()
    assert math.isfinite(loss) and not svi.last_step_finite
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    svi.step(x)
    assert svi.last_step_finite
    assert not torch.equal(model.decoder[0].weight, before["decoder.0.weight"])
