"""save_guide / load_guide: the file's contents for each of the three guides, written out by
hand, and what load_guide rebuilds from them (settings, example arguments given or stored)."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import zoo
from zoo.guides import AmortizedNormal, BayesByBackprop, MeanField, load_guide, save_guide
from zoo.guides.saving import read_guide_file


def global_model(x):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def local_model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 6)

    def forward(self, x):
        return self.net(x).chunk(2, dim=-1)


def test_a_bbb_file_holds_its_settings_shapes_and_versions(tmp_path):
    guide = BayesByBackprop(global_model, init_rho=(-3.0, -2.0), init_scale=0.1)
    path = save_guide(guide, tmp_path / "bbb.pt", torch.zeros(1, 2))
    state = read_guide_file(path)
    assert state["format"] == "zoo-guide/1" and state["class"] == "BayesByBackprop"
    assert state["settings"] == {"init_rho": [-3.0, -2.0], "init_scale": 0.1}
    assert state["sites"] == {"loc": {"shape": [2]}}
    assert state["versions"] == {
        "zoo": zoo.__version__,
        "pyro": pyro.__version__,
        "torch": str(torch.__version__),
    }
    loaded = load_guide(path, global_model)
    assert (loaded.init_rho, loaded.init_scale) == ((-3.0, -2.0), 0.1)
    assert torch.equal(loaded.median()["loc"], guide.median()["loc"])


def test_a_bbb_file_without_init_scale_leaves_it_out(tmp_path):
    guide = BayesByBackprop(global_model)
    state = read_guide_file(save_guide(guide, tmp_path / "bbb.pt", torch.zeros(1, 2)))
    assert state["settings"] == {"init_rho": [-5.0, -4.0]}


def test_a_meanfield_file_holds_families_init_values_and_scale(tmp_path):
    guide = MeanField(global_model, init_values={"loc": [0.5, -0.5]}, init_scale=0.3)
    state = read_guide_file(save_guide(guide, tmp_path / "mf.pt", torch.zeros(1, 2)))
    settings = state["settings"]
    assert set(settings) == {"families", "init_values", "init_scale"}
    assert settings["families"] == {} and settings["init_scale"] == 0.3
    assert torch.equal(settings["init_values"]["loc"], torch.tensor([0.5, -0.5]))


def test_an_amortized_file_holds_its_site_scale_and_event_shape_and_loads_its_encoder(tmp_path):
    guide = AmortizedNormal(local_model, Encoder(), site="z", scale="softplus")
    path = save_guide(guide, tmp_path / "amortized.pt", torch.zeros(2, 1))
    state = read_guide_file(path)
    assert state["settings"] == {"site": "z", "scale": "softplus"}
    assert state["sites"] == {"z": {"event_shape": [3]}}
    encoder = Encoder()
    loaded = load_guide(path, local_model, encoder=encoder)
    assert loaded.encoder is encoder and loaded.scale == "softplus"
    assert torch.equal(encoder.net.weight, guide.encoder.net.weight)


def test_stored_example_arguments_are_kept_by_position_and_keyword(tmp_path):
    guide = MeanField(global_model)
    path = save_guide(guide, tmp_path / "g.pt", x=torch.zeros(1, 2))
    state = read_guide_file(path)
    assert state["example_args"] == [] and set(state["example_kwargs"]) == {"x"}
    assert load_guide(path, global_model).is_setup  # traced with the stored keyword


def test_a_file_without_example_arguments_stores_none_and_takes_them_at_load(tmp_path):
    guide = MeanField(global_model)
    guide(torch.zeros(3, 2))
    path = save_guide(guide, tmp_path / "g.pt")
    state = read_guide_file(path)
    assert state["example_args"] is None and state["example_kwargs"] is None
    assert load_guide(path, global_model, example_kwargs={"x": torch.zeros(1, 2)}).is_setup
    assert load_guide(path, global_model, example_args=(torch.zeros(1, 2),)).is_setup


def test_a_model_without_arguments_loads_from_a_file_without_them(tmp_path):
    def model():
        pyro.sample("w", dist.Normal(0.0, 1.0))

    guide = BayesByBackprop(model).setup()
    loaded = load_guide(save_guide(guide, tmp_path / "g.pt"), model)
    assert torch.equal(loaded.median()["w"], guide.median()["w"])


def test_the_options_that_are_code_are_handed_to_the_rebuilt_guide(tmp_path):
    def create_plates(x):
        return pyro.plate("data", len(x))

    for cls in (MeanField, BayesByBackprop):
        path = save_guide(cls(global_model), tmp_path / f"{cls.__name__}.pt", torch.zeros(1, 2))
        assert load_guide(path, global_model, create_plates=create_plates).create_plates is create_plates
