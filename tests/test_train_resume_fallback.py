"""``Trainer.resume``: the refusals without an output folder or a checkpoint, word for word; a
folder that holds only the previous checkpoint resumes from it; a latest checkpoint without
its identity, or one that does not fit the model, gives way to the previous one with a
warning that names the latest file; ``resumed_from`` names the file used."""

import logging

import pyro
import pytest
import torch

from zoo.checkpoint import load_checkpoint, previous_path, save_checkpoint
from zoo.data import load_dataset
from zoo.errors import CheckpointError
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings

IDENTITY = {"model": "vae", "config": "resume-fallback"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def make_trainer(data, out_dir, epochs=2):
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[8])
    settings = TrainSettings(epochs=epochs, batch_size=512, progress=False)
    return Trainer(model, data, Adam({"lr": 1e-2}), settings, out_dir=out_dir, identity=IDENTITY)


@pytest.fixture
def two_epochs(digits, tmp_path):
    """A folder after two epochs: checkpoint.pt of epoch 2, checkpoint.prev.pt of epoch 1."""
    trainer = make_trainer(digits, tmp_path)
    trainer.fit()
    return trainer.checkpoint_path


def test_resume_without_an_output_folder_is_refused(digits):
    with pytest.raises(CheckpointError) as refused:
        make_trainer(digits, None).resume()
    assert str(refused.value) == "cannot resume: this trainer has no output folder"


def test_resume_without_a_checkpoint_says_where_it_looked_and_what_to_do(digits, tmp_path):
    with pytest.raises(CheckpointError) as refused:
        make_trainer(digits, tmp_path).resume()
    assert str(refused.value) == (
        f"resume = true is not valid here: there is no checkpoint at {tmp_path / 'checkpoint.pt'}. "
        "Point hydra.run.dir at the folder of the run to continue, or start without resume=true."
    )


def test_only_the_previous_checkpoint_left_resumes_from_it(digits, two_epochs):
    """A kill between the two renames of a save can leave checkpoint.prev.pt alone."""
    two_epochs.unlink()
    trainer = make_trainer(digits, two_epochs.parent)
    trainer.resume()
    assert trainer.epoch == 1 and trainer.resumed_from == previous_path(two_epochs)


def test_resumed_from_names_the_latest_when_it_is_used(digits, two_epochs):
    trainer = make_trainer(digits, two_epochs.parent)
    trainer.resume()
    assert trainer.epoch == 2 and trainer.resumed_from == two_epochs


def resume_after_damaging_the_latest(digits, path, damage, caplog):
    state = load_checkpoint(path)
    damage(state)
    save_checkpoint(state, path.with_name("damaged.pt"))
    path.with_name("damaged.pt").replace(path)  # checkpoint.prev.pt stays that of epoch 1
    trainer = make_trainer(digits, path.parent)
    with caplog.at_level(logging.WARNING, logger="zoo.checkpoint"):
        trainer.resume()
    assert trainer.epoch == 1 and trainer.resumed_from == previous_path(path)
    return caplog.messages


def test_a_latest_checkpoint_without_identity_gives_way_to_the_previous(
    digits, two_epochs, caplog
):
    messages = resume_after_damaging_the_latest(
        digits, two_epochs, lambda state: state.pop("identity"), caplog
    )
    assert messages == [
        f"checkpoint {two_epochs} lacks its identity: it is damaged or not a checkpoint of the "
        f"zoo's trainer; resuming from the previous checkpoint {previous_path(two_epochs)} instead"
    ]


def test_a_latest_checkpoint_that_does_not_fit_is_named_in_the_warning(
    digits, two_epochs, caplog
):
    def add_a_tensor(state):
        state["module"] = {**state["module"], "stray": torch.zeros(1)}

    messages = resume_after_damaging_the_latest(digits, two_epochs, add_a_tensor, caplog)
    assert messages == [
        f"checkpoint {two_epochs} does not fit this run: stray is not a tensor of the model; "
        f"resuming from the previous checkpoint {previous_path(two_epochs)} instead"
    ]
