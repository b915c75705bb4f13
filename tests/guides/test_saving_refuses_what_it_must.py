"""save_guide and load_guide refuse, word for word and naming the file: a guide that is not
the zoo's, example arguments that are not plain values, a guide that never ran, a file of
another format or class, an amortized guide without its encoder (and an encoder for a guide
that has none), a model that cannot be traced, other sites, and a state that does not fit."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal
from torch import nn

from zoo.errors import OutputError
from zoo.guides import AmortizedNormal, GuideFileError, MeanField, load_guide, save_guide
from zoo.guides.saving import read_guide_file


def model(x):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def local_model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)


class Encoder(nn.Module):
    def __init__(self, hidden=6):
        super().__init__()
        self.net = nn.Linear(1, hidden)

    def forward(self, x):
        return self.net(x).chunk(2, dim=-1)


def saved_meanfield(tmp_path):
    return save_guide(MeanField(model), tmp_path / "mf.pt", torch.zeros(1, 2))


def saved_amortized(tmp_path):
    guide = AmortizedNormal(local_model, Encoder())
    return save_guide(guide, tmp_path / "amortized.pt", torch.zeros(2, 1))


def test_a_guide_that_is_not_the_zoos_is_refused():
    with pytest.raises(TypeError) as error:
        save_guide(AutoNormal(model), "unused.pt")
    assert str(error.value) == (
        "save_guide saves the zoo's guides (AmortizedNormal, BayesByBackprop, MeanField), "
        "not a AutoNormal"
    )


def test_a_class_named_like_a_zoo_guide_is_refused(tmp_path):
    impostor = type("MeanField", (AutoNormal,), {})
    with pytest.raises(TypeError, match="not a MeanField"):
        save_guide(impostor(model), tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_an_example_argument_that_is_not_a_plain_value_is_named_by_its_place(tmp_path):
    with pytest.raises(GuideFileError) as error:
        save_guide(MeanField(model), tmp_path / "g.pt", torch.zeros(1, 2), [1, {"a": object()}])
    assert str(error.value) == (
        "example_args[1][1]['a'] is a object; a guide file stores tensors and plain values "
        "only. Save without example arguments and pass them to load_guide(example_args=...)."
    )


def test_an_example_keyword_that_is_not_a_plain_value_is_named(tmp_path):
    with pytest.raises(GuideFileError, match=r"^example_kwargs\['x'\] is a slice; "):
        save_guide(MeanField(model), tmp_path / "g.pt", x=slice(2))


def test_a_mapping_with_other_keys_than_text_is_not_plain(tmp_path):
    with pytest.raises(GuideFileError, match=r"^example_args\[0\] is a dict; "):
        save_guide(MeanField(model), tmp_path / "g.pt", {1: 2.0})


def test_plain_values_of_every_kind_are_stored(tmp_path):
    guide = MeanField(model)
    guide(torch.zeros(1, 2))  # set up: the example arguments are only stored
    plain = [None, True, 1, 2.0, "a", (3,), {"k": [torch.zeros(1)]}]
    path = save_guide(guide, tmp_path / "g.pt", torch.zeros(1, 2), extra=plain)
    stored = read_guide_file(path)["example_kwargs"]["extra"]
    assert stored[:5] == [None, True, 1, 2.0, "a"] and torch.equal(stored[6]["k"][0], torch.zeros(1))


def test_a_guide_that_never_ran_and_no_arguments_is_refused(tmp_path):
    with pytest.raises(ValueError) as error:
        save_guide(MeanField(model), tmp_path / "g.pt")
    assert str(error.value) == (
        "the guide has never run, so its sites are unknown: train it, call it once, or pass "
        "the model's arguments to save_guide(guide, path, *args)"
    )


def test_a_file_of_another_format_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "zoo-guide/0", "class": "MeanField"}, path)
    with pytest.raises(GuideFileError) as error:
        load_guide(path, model)
    assert str(error.value) == f"{path} is not a zoo guide file of format zoo-guide/1"


def test_a_file_naming_another_class_is_refused_listing_the_zoos_guides(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "zoo-guide/1", "class": "AutoNormal"}, path)
    with pytest.raises(GuideFileError) as error:
        load_guide(path, model)
    assert str(error.value) == (
        f"{path} names the guide class 'AutoNormal', which is not one of the zoo's guides "
        "(AmortizedNormal, BayesByBackprop, MeanField)"
    )


def test_an_amortized_guide_needs_an_encoder(tmp_path):
    path = saved_amortized(tmp_path)
    with pytest.raises(GuideFileError) as error:
        load_guide(path, local_model)
    assert str(error.value) == (
        f"{path} holds an AmortizedNormal: pass load_guide an encoder of the same "
        "architecture (encoder=...), whose weights it loads"
    )


def test_an_amortized_guide_is_rebuilt_with_the_options_given(tmp_path):
    path = saved_amortized(tmp_path)
    guide = load_guide(path, local_model, encoder=Encoder(), encoder_inputs=lambda x: (x,))
    assert guide.median(x=torch.zeros(4, 1))["z"].shape == (4, 3)  # by keyword: the option


def test_an_encoder_of_another_architecture_does_not_fit(tmp_path):
    path = saved_amortized(tmp_path)
    with pytest.raises(GuideFileError, match=f"^the state in {path} does not fit this guide: "):
        load_guide(path, local_model, encoder=Encoder(hidden=8), example_args=(torch.zeros(2, 1),))


def test_an_encoder_for_a_guide_without_one_is_refused(tmp_path):
    path = saved_meanfield(tmp_path)
    with pytest.raises(TypeError) as error:
        load_guide(path, model, encoder=Encoder())
    assert str(error.value) == f"{path} holds a MeanField, which has no encoder"


def test_a_model_that_cannot_be_traced_is_refused_with_its_error(tmp_path):
    path = saved_meanfield(tmp_path)

    def broken(x):
        raise RuntimeError("no data")

    with pytest.raises(GuideFileError) as error:
        load_guide(path, broken)
    # Pyro adds the trace's shapes to the model's own message, on lines of their own
    message = str(error.value)
    assert message.startswith(
        f"the model cannot be traced to rebuild the guide saved in {path}: no data"
    )
    assert message.endswith(
        ". Is it the model the guide was trained for? If the file stores no example "
        "arguments, pass them (example_args=...)."
    )


def test_other_sites_are_listed_missing_extra_and_changed(tmp_path):
    def saved_model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("c", dist.Normal(0.0, 1.0))

    def other():
        pyro.sample("b", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("d", dist.Normal(0.0, 1.0))
        pyro.sample("e", dist.Normal(0.0, 1.0))

    guide = MeanField(saved_model)
    guide.setup()
    path = save_guide(guide, tmp_path / "g.pt")
    with pytest.raises(GuideFileError) as error:
        load_guide(path, other)
    assert str(error.value) == (
        f"{path} was saved for a model with other latent sites: the file has ['a', 'c'], "
        "which this model lacks; this model has ['d', 'e'], which the file lacks; site 'b' is "
        "{'shape': [2], 'family': 'normal'} in the file, {'shape': [3], 'family': 'normal'} here"
    )


def test_a_file_that_cannot_be_written_is_named_as_a_guide_file(tmp_path):
    guide = MeanField(model)
    guide(torch.zeros(1, 2))
    path = tmp_path / "no_such_folder" / "g.pt"
    with pytest.raises(OutputError) as error:
        save_guide(guide, path)
    assert str(error.value).startswith(f"could not write the guide file {path}: ")
