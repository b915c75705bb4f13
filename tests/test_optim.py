"""One torch optimizer over all parameters: the same updates as pyro.optim's one per
parameter, state that round-trips in PyroOptim's format, clear refusals."""

import pyro
import pyro.distributions as dist
import pyro.optim.clipped_adam
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import PyroOptim

from zoo.optim import IMPLEMENTATIONS, Adam, SingleOptim

# fused Adam computes the same update in another order: equal to float32 rounding
TOLERANCE = {"fused": 1e-5, "foreach": 1e-6, "single_tensor": 0.0}
X = torch.randn(30, 3, generator=torch.Generator().manual_seed(0)) + torch.tensor([1.0, -2.0, 0.5])


def model(x):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(3), 3.0).to_event(1))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)


def guide(x):
    m = pyro.param("m", torch.zeros(3))
    s = pyro.param("s", torch.ones(3), constraint=dist.constraints.positive)
    pyro.sample("loc", dist.Normal(m, s).to_event(1))
    a = pyro.param("a", torch.tensor(0.0))
    b = pyro.param("b", torch.tensor(1.0), constraint=dist.constraints.positive)
    pyro.sample("scale", dist.LogNormal(a, b))


def fit(optim, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    pyro.set_rng_seed(seed)
    svi = SVI(model, guide, optim, Trace_ELBO())
    for _ in range(steps):
        svi.step(X)
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("clip_args", [None, {"clip_norm": 0.5}, {"clip_value": 0.1}])
def test_the_updates_are_pyro_adams(implementation, clip_args):
    expected = fit(pyro.optim.Adam({"lr": 0.05}, clip_args), 60)
    pyro.clear_param_store()
    got = fit(Adam({"lr": 0.05}, clip_args, implementation=implementation), 60)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=0, atol=TOLERANCE[implementation])
    # 60 steps moved the parameters: the comparison is not of two starting points
    assert expected["m"].abs().min() > 0.2


def interrupted(before: PyroOptim, after: PyroOptim, tmp_path) -> dict[str, torch.Tensor]:
    """20 steps with ``before``, both states saved and loaded in a clean param store (as in
    a new process), 20 more steps with ``after``."""
    fit(before, 20)
    pyro.get_param_store().save(tmp_path / "params.pt")
    before.save(tmp_path / "optim.pt")
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "params.pt")
    after.load(tmp_path / "optim.pt")
    return fit(after, 20, seed=1)


def uninterrupted(optim: PyroOptim) -> dict[str, torch.Tensor]:
    fit(optim, 20)
    return fit(optim, 20, seed=1)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_state_round_trips_and_the_continued_run_is_bit_identical(implementation, tmp_path):
    expected = uninterrupted(Adam({"lr": 0.05}, implementation=implementation))
    pyro.clear_param_store()
    got = interrupted(
        Adam({"lr": 0.05}, implementation=implementation),
        Adam({"lr": 0.05}, implementation=implementation),
        tmp_path,
    )
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_a_per_parameter_state_continues_bit_identically_in_one_optimizer(tmp_path):
    """Checkpoints written with pyro.optim.Adam resume in a SingleOptim, and back."""
    expected = uninterrupted(pyro.optim.Adam({"lr": 0.05}))
    for before, after in [
        (pyro.optim.Adam({"lr": 0.05}), Adam({"lr": 0.05}, implementation="single_tensor")),
        (Adam({"lr": 0.05}, implementation="single_tensor"), pyro.optim.Adam({"lr": 0.05})),
    ]:
        pyro.clear_param_store()
        got = interrupted(before, after, tmp_path)
        for name in expected:
            assert torch.equal(got[name], expected[name]), name


def test_decayed_learning_rate_is_restored():
    optim = SingleOptim(pyro.optim.clipped_adam.ClippedAdam, {"lr": 0.1, "lrd": 0.5})
    fit(optim, 3)
    state = optim.get_state()
    assert {s["param_groups"][0]["lr"] for s in state.values()} == {0.1 * 0.5**3}
    restored = SingleOptim(pyro.optim.clipped_adam.ClippedAdam, {"lr": 0.1, "lrd": 0.5})
    restored.set_state(state)
    fit(restored, 1)
    assert restored.optimizer.param_groups[0]["lr"] == 0.1 * 0.5**4


def test_a_parameter_left_out_of_a_step_is_left_alone():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    pyro.param("a", a)
    pyro.param("b", b)
    optim = Adam({"lr": 0.1}, implementation="fused")
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    optim([a, b])
    b_before, b_state = (
        b.detach().clone(),
        {k: v.clone() for k, v in optim.optimizer.state[b].items()},
    )
    optim([a])  # b still has a gradient, but this step is a's only
    assert torch.equal(b, b_before) and b.grad is not None
    assert all(torch.equal(v, optim.optimizer.state[b][k]) for k, v in b_state.items())
    assert not torch.equal(a, torch.ones(2) - 0.1)  # a moved twice


def test_one_optimizer_and_one_group_for_parameters_seen_together():
    optim = Adam({"lr": 0.05})
    fit(optim, 2)
    assert isinstance(optim, SingleOptim)
    assert len(optim.optimizer.param_groups) == 1
    assert len(optim.optimizer.param_groups[0]["params"]) == 4


def test_per_parameter_settings_make_groups():
    optim = Adam(lambda name: {"lr": 0.1 if name in ("m", "a") else 0.01}, implementation="foreach")
    fit(optim, 2)
    assert sorted(g["lr"] for g in optim.optimizer.param_groups) == [0.01, 0.1]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Adam({"lr": 0.1, "fused": True}), ValueError, "implementation="),
        (lambda: Adam({"lr": 0.1}, implementation="graph"), ValueError, "must be one of"),
        (lambda: SingleOptim(torch.optim.lr_scheduler.StepLR, {}), TypeError, "PyroLRScheduler"),
        (lambda: SingleOptim(torch.optim.Adam, {}, fuse=True), TypeError, "implementation"),
    ],
)
def test_refusals_say_what_to_do(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_an_optimizer_without_the_implementation_is_refused():
    with pytest.raises(TypeError, match="ClippedAdam has no fused implementation"):
        SingleOptim(pyro.optim.clipped_adam.ClippedAdam, {"lr": 0.1}, fused=True)


@pytest.mark.parametrize("option", ["adam", "clipped_adam"])
@pytest.mark.parametrize("clip", [[], ["+optim.clip_args.clip_norm=5.0"]])
def test_every_optim_option_builds_and_steps(option, clip):
    """Each file of conf/optim builds, with and without per-parameter clipping, and takes a
    step that changes the parameters (optim=clipped_adam once failed to build at all)."""
    from hydra import compose, initialize_config_dir

    from zoo.__main__ import config_dir
    from zoo.config import validate

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"optim={option}", *clip])
    optim = validate(cfg).optim.build()
    pyro.clear_param_store()
    loc = pyro.param("loc", torch.zeros(3))
    before = loc.detach().clone()

    def model():
        loc = pyro.param("loc")
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=torch.ones(3))

    svi = pyro.infer.SVI(model, lambda: None, optim, pyro.infer.Trace_ELBO())
    svi.step()
    assert not torch.equal(pyro.param("loc").detach(), before)
