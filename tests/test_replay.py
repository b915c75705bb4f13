"""The trainer's replayed steps (zoo.replay) are Pyro's steps, to the last bit, or do not run.

Every comparison here is exact (``==`` on losses, ``torch.equal`` on tensors): a replayed
step must draw the same random numbers and give the same loss and gradients as Pyro's ELBO.
"""

import copy
import logging

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO
from pyro.nn import PyroParam, pyro_method

import zoo.replay
from zoo.data import load_dataset
from zoo.handlers import KLAnnealingMessenger
from zoo.models import BNN, GMM, VAE
from zoo.models.base import ZooModel, data_plate
from zoo.optim import Adam
from zoo.replay import Replay, replay_refusal
from zoo.schedules import make_schedule
from zoo.train import Trainer, TrainSettings, drop_grads, make_elbo


@pytest.fixture(autouse=True)
def graphs_after_three_pyro_steps(monkeypatch):
    monkeypatch.setattr(zoo.replay, "PYRO_STEPS", 3)


@pytest.fixture(autouse=True)
def without_validation():
    """As the trainer runs (trainer.validate=false): a replay declines every step under
    Pyro's validation, which is on by default."""
    with pyro.validation_enabled(False):
        yield


def binary(data, rows):
    return (data.train_x[:rows] > 0.5).float()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def toy():
    return load_dataset("toy_regression", n_train=96, n_test=32)


@pytest.fixture(scope="module")
def faithful():
    return load_dataset("old_faithful")


def vae(data, **settings):
    return VAE(data.num_features, latent_dim=3, hidden_dims=[16], **settings)


CASES = {
    "vae, linear warm-up": ("digits", lambda d: vae(d), {}, ("linear", {"warmup_epochs": 2})),
    "vae, meanfield, 2 particles": (
        "digits",
        lambda d: vae(d),
        {"elbo": "meanfield", "num_particles": 2},
        ("linear", {"warmup_epochs": 2}),
    ),
    "vae, free bits, warm-up": (
        "digits",
        lambda d: vae(d, free_bits=0.2),
        {},
        ("linear", {"warmup_epochs": 2}),
    ),
    "bnn, local reparameterization": (
        "toy",
        lambda d: BNN.build(d, hidden_dims=[8], prior="gaussian", noise=0.1),
        {},
        None,
    ),
    "bnn, sampled weights, scale mixture": (
        "toy",
        lambda d: BNN.build(d, hidden_dims=[8], local_reparameterization=False),
        {},
        None,
    ),
    "bnn, closed-form KL, tempered": (
        "toy",
        lambda d: BNN.build(d, hidden_dims=[8], prior="gaussian", noise=0.1),
        {"elbo": "meanfield"},
        ("constant", {"value": 0.1}),
    ),
    "bnn, mc dropout": (
        "toy",
        lambda d: BNN.build(d, hidden_dims=[8], guide="mc_dropout", dropout=0.2, noise=0.1),
        {},
        None,
    ),
    "gmm, mixture form": (
        "faithful",
        lambda d: GMM.build(d, restarts=1, restart_steps=0),
        {},
        None,
    ),
}


def train(data, build, settings, schedule, replay, epochs=3):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = build(data)
    trainer = Trainer(
        model,
        data,
        Adam({"lr": 1e-2}),
        TrainSettings(epochs=epochs, batch_size=32, progress=False, replay=replay, **settings),
        schedule=make_schedule(schedule[0], **schedule[1]) if schedule else None,
    )
    trainer.fit()
    return trainer


def without_times(history):
    return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in history]


@pytest.mark.parametrize("case", CASES)
def test_training_with_replay_equals_training_in_pyro_bit_for_bit(case, request):
    data_name, build, settings, schedule = CASES[case]
    data = request.getfixturevalue(data_name)
    replayed = train(data, build, settings, schedule, replay=True)
    in_pyro = train(data, build, settings, schedule, replay=False)

    steps = replayed.steps_per_epoch * 3
    assert replayed.svi.replay.refusals() == []
    assert replayed.svi.replay.replayed_steps == steps - 3
    assert in_pyro.svi.replay is None
    assert without_times(replayed.history) == without_times(in_pyro.history)
    a, b = replayed.model.state_dict(), in_pyro.model.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_resumed_replayed_run_ends_as_one_never_stopped(digits, tmp_path):
    def trainer(out_dir, epochs, seed=0):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        model = vae(digits)
        return Trainer(
            model,
            digits,
            Adam({"lr": 1e-2}),
            TrainSettings(epochs=epochs, batch_size=64, progress=False, eval_every=2),
            schedule=make_schedule("linear", warmup_epochs=3),
            evaluate=lambda: model.evaluate(digits, iw_samples=0),
            out_dir=out_dir,
            identity={"model": "vae", "config": "replay"},
        )

    straight = trainer(tmp_path / "straight", 4)
    straight.fit()
    first = trainer(tmp_path / "stopped", 2)
    first.fit()
    second = trainer(tmp_path / "stopped", 4, seed=123)
    second.resume()
    second.fit()
    # the resumed run made its graph three steps after the resume, the other one at its start
    assert second.svi.replay.replayed_steps == 2 * second.steps_per_epoch - 3
    assert without_times(second.history) == without_times(straight.history)
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), second.model.state_dict().items()
    ):
        assert torch.equal(a, b), name


# ---- one step, replayed and in Pyro, from the same random state -----------------------------


def step_both_ways(replay, elbo, model, guide, *args, **kwargs):
    """The loss and gradients of a replayed step and of Pyro's, from one random state."""
    state = torch.get_rng_state()
    result = replay.loss_and_grads(*args, **kwargs)
    assert result is not None
    loss, params = result
    grads = {name: p.grad.clone() for name, p in params.items()}
    drop_grads(params.values())
    torch.set_rng_state(state)
    expected = elbo.loss_and_grads(model, guide, *args, **kwargs)
    expected_grads = {name: p.grad.clone() for name, p in params.items()}
    drop_grads(params.values())
    return (loss, grads), (expected, expected_grads)


def warm(replay, *args, **kwargs):
    """Takes the key's steps in Pyro (the replay declines them, and Pyro takes them, as in
    GuardedSVI), then the step that makes its graph; gradients dropped."""
    for _ in range(replay.pyro_steps):
        assert replay.loss_and_grads(*args, **kwargs) is None
        replay.elbo.loss_and_grads(replay.model, replay.guide, *args, **kwargs)
    assert replay.loss_and_grads(*args, **kwargs) is not None
    assert replay.refusals() == []
    for p in pyro.get_param_store().values():
        p.unconstrained().grad = None


def test_the_graph_takes_beta_as_an_input(digits):
    pyro.clear_param_store()
    model = vae(digits)
    elbo = make_elbo("trace")
    replay = Replay(elbo, model.model, model.guide, model)
    x, size = binary(digits, 32), len(digits.train_x)
    annealer = KLAnnealingMessenger(0.2)
    with annealer:
        warm(replay, x, size=size)
    for beta in (0.0, 0.7, 1.0, 3.0):
        annealer.beta = beta
        with annealer:
            got, expected = step_both_ways(replay, elbo, model.model, model.guide, x, size=size)
        assert got[0] == expected[0], beta
        assert all(torch.equal(got[1][n], expected[1][n]) for n in got[1]), beta
    assert replay.graphs_made == 1


class GlobalWeight(torch.nn.Module):
    """A weight vector with no plate, as a BNN layer's: its log densities, and its closed-form
    KL, are 0-d float32 sums, which meet beta on their own."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.full((5,), 0.3))
        self.log_scale = torch.nn.Parameter(torch.full((5,), -1.0))

    def model(self, x):
        w = pyro.sample("w", dist.Normal(torch.zeros(5), 1.0).to_event(1))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal((w * x).sum(-1), 1.0), obs=x[:, 0])

    def guide(self, x):
        pyro.module("global_weight", self)
        pyro.sample("w", dist.Normal(self.loc, self.log_scale.exp()).to_event(1))


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_beta_meets_a_0d_float32_term_as_a_python_float_would(elbo):
    # torch rounds a Python float to float32 before it multiplies a float32 tensor; a float64
    # 0-d tensor would make the product in float64, and the loss would be apart in its last
    # bits (the graph was then declined, and the BNN under meanfield ran in Pyro)
    pyro.clear_param_store()
    net, elbo = GlobalWeight(), make_elbo(elbo)
    replay = Replay(elbo, net.model, net.guide, net, pyro_steps=1)
    x = torch.randn(16, 5)
    annealer = KLAnnealingMessenger(0.1)
    with annealer:
        warm(replay, x)
    (graph,) = replay._graphs.values()
    casts = [
        n
        for n in graph.module.graph.nodes
        if n.target == torch.ops.aten._to_copy.default and n.kwargs.get("dtype") == torch.float32
    ]
    assert casts, "beta is not rounded to the term's dtype in the graph"
    for beta in (0.1, 1 / 3, 0.0, 0.7, 1.0, 3.0):
        annealer.beta = beta
        with annealer:
            got, expected = step_both_ways(replay, elbo, net.model, net.guide, x)
        assert got[0] == expected[0], beta
        assert all(torch.equal(got[1][n], expected[1][n]) for n in got[1]), beta
    assert replay.graphs_made == 1 and replay.refusals() == []


def test_another_shape_or_mode_makes_another_graph(digits):
    pyro.clear_param_store()
    model = vae(digits)
    elbo = make_elbo("trace")
    replay = Replay(elbo, model.model, model.guide, model)
    size = len(digits.train_x)
    warm(replay, binary(digits, 32), size=size)
    warm(replay, binary(digits, 16), size=size)  # another batch shape
    warm(replay, binary(digits, 16), size=size - 1)  # another value of a keyword
    model.eval()
    warm(replay, binary(digits, 16), size=size - 1)  # eval mode
    model.train()
    with poutine.scale(scale=0.5):  # another handler on Pyro's stack
        warm(replay, binary(digits, 16), size=size - 1)
    assert replay.graphs_made == 5
    got, expected = step_both_ways(
        replay, elbo, model.model, model.guide, binary(digits, 16), size=size
    )
    assert got[0] == expected[0]


# ---- what stays with Pyro ---------------------------------------------------------------


class OneSite(ZooModel):
    """loc ~ Normal(0, 1); x_i ~ Normal(loc, 1); guide Normal(m, softplus(s)), with a hook to
    make the guide do what a trace cannot replay."""

    def __init__(self, guide_body) -> None:
        super().__init__()
        self.m = PyroParam(torch.tensor(0.5))
        self.s = PyroParam(torch.tensor(0.0))
        self.guide_body = guide_body

    @pyro_method
    def model(self, x, y=None, size=None):
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        with data_plate(x, size):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    @pyro_method
    def guide(self, x, y=None, size=None):
        pyro.sample("loc", dist.Normal(self.guide_body(self.m, x), F.softplus(self.s)))


def test_a_param_store_that_holds_other_tensors_makes_the_graph_again():
    pyro.clear_param_store()
    model = OneSite(lambda m, x: m)  # its parameters live in the store: read from it per step
    elbo = Trace_ELBO()
    replay = Replay(elbo, model.model, model.guide, model)
    x = torch.randn(8)
    warm(replay, x, size=80)
    store = pyro.get_param_store()
    state = copy.deepcopy(store.get_state())  # get_state holds the store's own tensors
    state["params"] = {k: v + 1.0 for k, v in state["params"].items()}
    store.set_state(state)  # other tensors under the same names
    got, expected = step_both_ways(replay, elbo, model.model, model.guide, x, size=80)
    assert replay.graphs_made == 2
    assert got[0] == expected[0]
    assert all(torch.equal(got[1][n], expected[1][n]) for n in got[1])
    assert set(got[1]) == set(store.keys())


def test_a_random_draw_whose_value_is_unused_is_replayed_too():
    """The graph keeps a draw that nothing reads: dropping it would shift every later draw."""
    pyro.clear_param_store()
    model = OneSite(lambda m, x: (torch.randn(3), m)[1])
    elbo = Trace_ELBO()
    replay = Replay(elbo, model.model, model.guide, model)
    x = torch.randn(8)
    warm(replay, x, size=80)
    got, expected = step_both_ways(replay, elbo, model.model, model.guide, x, size=80)
    assert got[0] == expected[0]
    assert all(torch.equal(got[1][n], expected[1][n]) for n in got[1])


def branch_on_a_value(m, x):
    return m + 1.0 if x.sum().item() > 0 else m - 1.0


def shift_without_gradient(m, x):
    with torch.no_grad():
        shift = 0.5 * m
    return m + shift  # d/dm is 1 in Pyro; a graph that lost no_grad would say 1.5


@pytest.mark.parametrize(
    "body, reason",
    [
        (branch_on_a_value, "could not be traced"),
        (shift_without_gradient, "the gradient of"),
    ],
)
def test_a_step_a_graph_would_get_wrong_stays_with_pyro(body, reason, caplog):
    pyro.clear_param_store()
    model = OneSite(body)
    elbo = Trace_ELBO()
    replay = Replay(elbo, model.model, model.guide, model)
    x = torch.randn(8)
    for _ in range(replay.pyro_steps):
        assert replay.loss_and_grads(x, size=80) is None
        elbo.loss_and_grads(model.model, model.guide, x, size=80)
    drop_grads(p.unconstrained() for p in pyro.get_param_store().values())
    with caplog.at_level(logging.INFO, logger="zoo.replay"):
        state = torch.get_rng_state()
        loss, params = replay.loss_and_grads(x, size=80)  # Pyro's step, with its gradients
    grads = {n: p.grad.clone() for n, p in params.items()}
    drop_grads(params.values())
    torch.set_rng_state(state)
    expected = elbo.loss_and_grads(model.model, model.guide, x, size=80)
    assert loss == expected
    assert all(torch.equal(grads[n], p.grad) for n, p in params.items())
    assert len(replay.refusals()) == 1 and reason in replay.refusals()[0]
    assert reason in caplog.text
    assert replay.loss_and_grads(x, size=80) is None  # and it stays refused
    assert replay.replayed_steps == 0


def test_elbos_that_compile_or_enumerate_and_validation_are_not_replayed(digits):
    assert "TorchScript" in replay_refusal(JitTrace_ELBO())
    assert "not Trace_ELBO" in replay_refusal(TraceEnum_ELBO())
    assert replay_refusal(make_elbo("meanfield")) is None
    pyro.clear_param_store()
    model = vae(digits)
    replay = Replay(make_elbo("trace"), model.model, model.guide, model, pyro_steps=1)
    x, size = binary(digits, 8), len(digits.train_x)
    with pyro.validation_enabled(True):
        assert "validation" in replay.why_not()
        for _ in range(3):
            assert replay.loss_and_grads(x, size=size) is None
    assert replay.graphs_made == 0
    assert replay.why_not() is None  # validation off again: steps may be replayed
    assert len(replay.refusals()) == 1 and "trainer.validate=true" in replay.refusals()[0]
    with pytest.raises(ValueError, match="at least 1"):
        Replay(make_elbo("trace"), model.model, model.guide, pyro_steps=0)


def test_the_trainer_setting_turns_replay_off(digits):
    assert TrainSettings().replay is True
    assert train(digits, vae, {}, None, replay=False, epochs=1).svi.replay is None


def test_the_trainer_reports_what_was_replayed_and_why_not(digits, caplog):
    replayed = train(digits, vae, {}, None, replay=True, epochs=1)
    assert replayed.replay_summary == {
        "replayed_steps": replayed.steps_per_epoch - 3,
        "not_replayed": [],
    }
    with caplog.at_level(logging.INFO, logger="zoo.train"):
        jit = train(digits, vae, {"elbo": "jit"}, None, replay=True, epochs=1)
    assert jit.replay_summary["replayed_steps"] == 0
    assert "TorchScript" in jit.replay_summary["not_replayed"][0]
    assert "steps are not replayed (zoo.replay): JitTrace_ELBO" in caplog.text
    assert train(digits, vae, {}, None, replay=False, epochs=1).replay_summary is None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo.train"):
        validated = train(digits, vae, {"validation": True}, None, replay=True, epochs=1)
    assert validated.replay_summary["replayed_steps"] == 0
    (why,) = validated.replay_summary["not_replayed"]  # the summary says what the log says
    assert "trainer.validate=true" in why and f"(zoo.replay): {why}" in caplog.text


# ---- what a hostile review found (each a case that once replayed a wrong step) ---------------


def steps_both_ways(replay, elbo, model, guide, steps, arguments):
    """For each step: (replayed?, equal to Pyro's step from the same random state?). The
    parameters move by Pyro's gradients after each step, so every step has new values."""
    outcomes = []
    for i in range(steps):
        args, kwargs = arguments(i)
        state = torch.get_rng_state()
        drop_grads(p.unconstrained() for p in pyro.get_param_store().values())
        result = replay.loss_and_grads(*args, **kwargs)
        if result is None:
            loss = elbo.loss_and_grads(model, guide, *args, **kwargs)
            grads = {n: p.unconstrained().grad for n, p in pyro.get_param_store().items()}
        else:
            loss, params = result
            grads = {n: p.grad for n, p in params.items()}
        grads = {n: None if g is None else g.clone() for n, g in grads.items()}
        drop_grads(p.unconstrained() for p in pyro.get_param_store().values())
        torch.set_rng_state(state)
        expected = elbo.loss_and_grads(model, guide, *args, **kwargs)
        equal = loss == expected and all(
            (g is None) == (pyro.get_param_store()._params[n].grad is None)
            and (g is None or torch.equal(g, pyro.get_param_store()._params[n].grad))
            for n, g in grads.items()
        )
        with torch.no_grad():
            for p in pyro.get_param_store()._params.values():
                if p.grad is not None:
                    p -= 0.01 * p.grad
        outcomes.append((result is not None, equal))
    return outcomes


def one_site(body=lambda m, x: m):
    pyro.clear_param_store()
    model = OneSite(body)
    return model, Trace_ELBO()


def test_a_handler_made_anew_each_step_is_not_taken_for_the_last_one():
    model, elbo = one_site()
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1)
    x = torch.randn(8)

    def arguments(i):
        return (x,), {"size": 80}

    outcomes = []
    for i in range(6):  # a new poutine.scale each step, as a user's loop might make
        with poutine.scale(scale=1.0 + i):
            outcomes += steps_both_ways(replay, elbo, model.model, model.guide, 1, arguments)
    assert all(equal for _, equal in outcomes)


def test_python_state_that_the_graph_froze_is_caught_at_the_next_check(caplog):
    state = {"shift": 0.0}
    model, elbo = one_site(lambda m, x: m + state["shift"])
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1, check_every=2)
    x = torch.randn(8)

    def arguments(i):
        state["shift"] = 0.1 * i  # a Python number that changes: frozen into the graph
        return (x,), {"size": 80}

    with caplog.at_level(logging.WARNING, logger="zoo.replay"):
        outcomes = steps_both_ways(replay, elbo, model.model, model.guide, 8, arguments)
    # step 1 in Pyro; step 2 makes the graph (equal then); step 3 replays it, wrong; step 4
    # checks it, answers with Pyro's step and drops the graph
    assert outcomes[:4] == [(False, True), (True, True), (True, False), (True, True)]
    assert all(outcome == (False, True) for outcome in outcomes[4:])
    assert "at its check after 2 replays" in replay.refusals()[0]
    assert "at its check after 2 replays" in caplog.text


class WithModules(OneSite):
    """OneSite whose guide's loc goes through batch norm and dropout submodules."""

    def __init__(self) -> None:
        super().__init__(lambda m, x: m)
        self.norm = torch.nn.BatchNorm1d(1)
        self.drop = torch.nn.Dropout(0.5)

    @pyro_method
    def guide(self, x, y=None, size=None):
        shift = self.drop(self.norm(x.unsqueeze(-1))).mean()
        pyro.sample("loc", dist.Normal(self.m + shift, F.softplus(self.s)))


def test_buffers_and_submodule_modes_are_part_of_the_step():
    pyro.clear_param_store()
    model, elbo = WithModules(), Trace_ELBO()
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1, check_every=3)
    x = torch.randn(8)

    def arguments(i):
        if i == 4:
            model.drop.eval()  # a submodule's mode: another graph
        return (x,), {"size": 80}

    outcomes = steps_both_ways(replay, elbo, model.model, model.guide, 8, arguments)
    assert all(equal for _, equal in outcomes)
    assert replay.refusals() == [] and replay.graphs_made == 2


def test_a_batch_norm_running_mean_moves_once_per_step():
    def run(replayed):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model, elbo = WithModules(), Trace_ELBO()
        replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1)
        x = torch.randn(8)
        for _ in range(4):
            if not replayed or replay.loss_and_grads(x, size=80) is None:
                elbo.loss_and_grads(model.model, model.guide, x, size=80)
            drop_grads(p.unconstrained() for p in pyro.get_param_store().values())
        return model.norm.running_mean.clone(), int(model.norm.num_batches_tracked)

    (mean, batches), (expected_mean, expected_batches) = run(True), run(False)
    assert batches == expected_batches == 4
    assert torch.equal(mean, expected_mean)


def test_a_batch_with_other_strides_makes_another_graph():
    model, elbo = one_site(lambda m, x: m + x.reshape(-1)[:1].sum() * 0.0)
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1)
    square = torch.randn(4, 4)

    def arguments(i):
        return ((square if i < 3 else square.t()),), {"size": 40}

    outcomes = steps_both_ways(replay, elbo, model.model, model.guide, 6, arguments)
    assert all(equal for _, equal in outcomes)
    assert replay.graphs_made == 2 and replay.refusals() == []


def test_an_argument_that_holds_tensors_is_not_keyed():
    model, elbo = one_site()
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1)
    for _ in range(3):
        assert replay.loss_and_grads(torch.randn(8), size=80, y=(torch.randn(2),)) is None
    assert replay._pyro_steps_of == {} and replay.graphs_made == 0


def test_a_parameter_made_trainable_makes_the_graph_again():
    model, elbo = one_site()
    replay = Replay(elbo, model.model, model.guide, model, pyro_steps=1)
    x = torch.randn(8)
    model.s_unconstrained.requires_grad_(False)  # frozen at first

    def arguments(i):
        if i == 3:
            model.s_unconstrained.requires_grad_(True)
        return (x,), {"size": 80}

    outcomes = steps_both_ways(replay, elbo, model.model, model.guide, 6, arguments)
    assert all(equal for _, equal in outcomes)
    assert replay.graphs_made == 2


def test_the_trainer_replays_only_models_that_declare_it(digits):
    class Undeclared(VAE):
        replayable = False

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = Undeclared(digits.num_features, latent_dim=3, hidden_dims=[16])
    trainer = Trainer(
        model,
        digits,
        Adam({"lr": 1e-2}),
        TrainSettings(epochs=1, batch_size=32, progress=False),
    )
    trainer.fit()
    assert trainer.replay_summary["replayed_steps"] == 0
    assert "does not declare its step replayable" in trainer.replay_summary["not_replayed"][0]
