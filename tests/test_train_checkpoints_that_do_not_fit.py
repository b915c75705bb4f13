"""``Trainer.load_state`` refuses a checkpoint that does not fit the run before loading any of
it, naming the file and each misfit: missing keys, an epoch that is not a count, a history
of another length, a module or optimizer state that is no dict, an RNG state without torch's
generator, tensors missing, extra or of another shape, optimizer state of a non-parameter; at
most five, then how many more. A state that fits but that torch refuses is "cannot be loaded".
Each message is checked word for word, in-process (the command-line fault tests say the same
through ``python -m zoo``)."""

import pyro
import pytest
import torch

from zoo.checkpoint import UnusableCheckpoint
from zoo.data import load_dataset
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings

SOURCE = "run/checkpoint.pt"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture
def trainer(digits, tmp_path):
    """A VAE trainer after one epoch, so that its state holds optimizer moments."""
    pyro.set_rng_seed(0)
    model = VAE(digits.num_features, latent_dim=2, hidden_dims=[8])
    trainer = Trainer(
        model,
        digits,
        Adam({"lr": 1e-2}),
        TrainSettings(epochs=1, batch_size=512, progress=False),
        out_dir=tmp_path,
    )
    trainer.fit()
    return trainer


def refusal(trainer, state) -> str:
    with pytest.raises(UnusableCheckpoint) as refused:
        trainer.load_state(state, SOURCE)
    return str(refused.value)


def misfit(trainer, state) -> str:
    """The one misfit named after ``checkpoint ... does not fit this run: ``."""
    message = refusal(trainer, state)
    prefix = f"checkpoint {SOURCE} does not fit this run: "
    assert message.startswith(prefix), message
    return message.removeprefix(prefix)


def test_a_state_that_fits_loads(trainer):
    state = trainer.state()
    trainer.epoch = 7
    trainer.load_state(state, SOURCE)
    assert trainer.epoch == 1 and len(trainer.history) == 1


def test_a_state_at_epoch_0_fits(trainer):
    state = {**trainer.state(), "epoch": 0, "history": []}
    trainer.load_state(state, SOURCE)
    assert trainer.epoch == 0 and trainer.history == []


def test_missing_keys_are_named_in_order(trainer):
    state = trainer.state()
    del state["history"], state["rng"]
    assert misfit(trainer, state) == "it lacks history, rng"


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"epoch": -1, "history": []}, "epoch = -1 is not an integer >= 0"),
        ({"epoch": "1"}, "epoch = '1' is not an integer >= 0"),
        # a string of the right length is still no list of records
        ({"history": "x"}, "its history does not hold one record per epoch of its 1"),
        ({"history": []}, "its history does not hold one record per epoch of its 1"),
        ({"optim": []}, "module and optim must be dicts"),
        ({"module": []}, "module and optim must be dicts"),
        ({"rng": {"python": None}}, "its rng state lacks torch's generator state"),
        ({"rng": [torch.zeros(3)]}, "its rng state lacks torch's generator state"),
    ],
)
def test_each_misfit_of_the_plain_values_is_named(trainer, change, expected):
    assert misfit(trainer, {**trainer.state(), **change}) == expected


def module_misfits(trainer, missing=0, extra=0, reshaped=0, foreign_optim=0):
    """A state with that many tensors missing, tensors the model lacks, tensors of another
    shape and optimizer states of names that are no parameter (missing and reshaped tensors
    taken from the model's first names)."""
    state = trainer.state()
    module, optim = dict(state["module"]), dict(state["optim"])
    names = list(module)
    for name in names[:missing]:
        del module[name]
    for name in names[missing : missing + reshaped]:
        module[name] = torch.zeros(*module[name].shape, 2)
    for i in range(extra):
        module[f"extra_{i}"] = torch.zeros(1)
    for i in range(foreign_optim):
        optim[f"foreign_{i}"] = {}
    return {**state, "module": module, "optim": optim}, names


def test_tensor_misfits_of_each_kind_are_all_named(trainer):
    state, names = module_misfits(trainer, missing=1, extra=1, reshaped=1, foreign_optim=1)
    shape = tuple(trainer.model.state_dict()[names[1]].shape)
    assert misfit(trainer, state) == (
        f"{names[0]} is missing; extra_0 is not a tensor of the model; "
        f"{names[1]} has shape {(*shape, 2)}, the model's is {shape}; "
        "optimizer state for foreign_0, which is not a parameter of the model"
    )


@pytest.mark.parametrize("count", [5, 6, 7])
def test_five_misfits_are_named_then_how_many_more(trainer, count):
    state, _ = module_misfits(trainer, extra=count)
    listed = "; ".join(f"extra_{i} is not a tensor of the model" for i in range(min(count, 5)))
    more = f"; and {count - 5} more" if count > 5 else ""
    assert misfit(trainer, state) == listed + more


def test_nothing_is_loaded_from_a_state_that_does_not_fit(trainer):
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    state, _ = module_misfits(trainer, extra=1)
    state["module"] = {k: v + 1 for k, v in state["module"].items()}
    state["epoch"], state["history"] = 1, [{}]
    misfit(trainer, state)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_state_that_fits_but_torch_refuses_cannot_be_loaded(trainer):
    """The RNG state is a tensor, as the check asks, but not one torch takes as a generator
    state: torch's own reason follows the file's name."""
    state = trainer.state()
    state["rng"] = {**state["rng"], "torch": torch.zeros(3)}
    message = refusal(trainer, state)
    assert message.startswith(f"checkpoint {SOURCE} cannot be loaded: ")
    assert len(message) > len(f"checkpoint {SOURCE} cannot be loaded: ")
