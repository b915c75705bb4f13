"""The trainer applies the KL-annealing handler to each step: its loss is the annealed one.

The test suite once checked only the logged beta, so a trainer that set beta but never put the
handler around the step passed every test while every warm-up row of the results was wrong.
Here the loss of real trainer steps is compared with the annealed ELBO computed by hand,
``-(N/b log p(x_b | z) + beta (log p(z) - log q(z)))``, from a guide trace with the same
random draws (the trainer's permutation first, then one draw of z per step).
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam, pyro_method
from torch.distributions import Normal

from zoo.models.base import ZooModel, data_plate
from zoo.train import Trainer, TrainSettings

N, BATCH = 9, 4  # two steps of 4 rows an epoch, the ninth row left out; N / b = 9 / 4


class GlobalLatent(ZooModel):
    """z ~ N(0, I_2), x_i ~ N(z, I_2); guide q(z) = N(loc, diag(scale^2))."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = PyroParam(torch.tensor([0.3, -0.2]))
        self.scale = PyroParam(torch.tensor([0.7, 1.1]), constraint=constraints.positive)

    @pyro_method
    def model(self, x, y=None, size=None):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with data_plate(x, size):
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    @pyro_method
    def guide(self, x, y=None, size=None):
        pyro.sample("z", dist.Normal(self.loc, self.scale).to_event(1))


class Rows:
    name = "rows"
    train_y = None

    def __init__(self) -> None:
        self.train_x = torch.linspace(-2.0, 3.0, 2 * N).reshape(N, 2)


def annealed_loss_by_hand(model, rows, z, beta):
    """-(N/b sum_i log N(x_i | z, I) + beta (log N(z | 0, I) - log N(z | loc, scale)))."""
    log_likelihood = Normal(z, 1.0).log_prob(rows).sum() * N / len(rows)
    log_prior = Normal(0.0, 1.0).log_prob(z).sum()
    log_q = Normal(model.loc.detach(), model.scale.detach()).log_prob(z).sum()
    return -(log_likelihood + beta * (log_prior - log_q)).item()


@pytest.mark.parametrize("betas", [[0.3, 0.3], [2.5, 2.5], [0.0, 0.5]])
def test_the_loss_of_a_trainer_step_is_the_annealed_elbo(betas):
    model, data = GlobalLatent(), Rows()

    # by hand: the trainer draws one permutation per epoch, then one z per step
    pyro.set_rng_seed(7)
    batches = torch.randperm(N)[: 2 * BATCH].view(2, BATCH)
    expected, plain = 0.0, 0.0
    for index, beta in zip(batches, betas):
        z = pyro.poutine.trace(model.guide).get_trace(data.train_x[index], size=N).nodes["z"]
        z = z["value"].detach()
        expected += annealed_loss_by_hand(model, data.train_x[index], z, beta)
        plain += annealed_loss_by_hand(model, data.train_x[index], z, 1.0)
    # the case must tell an annealed step from a plain one, or it proves nothing
    assert plain != pytest.approx(expected, rel=1e-3)

    pyro.set_rng_seed(7)
    settings = TrainSettings(epochs=1, batch_size=BATCH, progress=False, validate=True)
    # lr = 0: both steps see the parameters the hand computation used
    trainer = Trainer(
        model,
        data,
        pyro.optim.SGD({"lr": 0.0}),
        settings,
        schedule=lambda epoch, step, steps: betas[step],
    )
    (record,) = trainer.fit()

    assert record["beta"] == betas[-1]
    # train/loss is the mean loss per step, per data point
    assert record["train/loss"] * 2 * N == pytest.approx(expected, rel=1e-6)
