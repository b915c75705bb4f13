"""save_guide / load_guide: what the file holds, and the files it refuses."""

import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import GuideFileError, MeanField, load_guide, save_guide
from zoo.guides.saving import read_guide_file


def model(x):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def trained(tmp_path):
    guide = MeanField(model, init_scale=0.2)
    guide(torch.zeros(3, 2))
    return guide, save_guide(guide, tmp_path / "guide.pt", torch.zeros(1, 2))


def test_the_file_holds_class_settings_sites_state_and_versions(tmp_path):
    guide, path = trained(tmp_path)
    state = read_guide_file(path)
    assert state["class"] == "MeanField"
    assert state["settings"] == {"families": {}, "init_values": {}, "init_scale": 0.2}
    assert state["sites"] == {"loc": {"shape": [2], "family": "normal"}}
    assert set(state["state_dict"]) == set(guide.state_dict())
    assert set(state["versions"]) == {"zoo", "pyro", "torch"}
    assert load_guide(path, model).init_scale == 0.2


def test_a_file_for_another_model_is_refused_naming_file_and_mismatch(tmp_path):
    _, path = trained(tmp_path)

    def other(x):
        pyro.sample("loc", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("scale", dist.LogNormal(0.0, 1.0))

    with pytest.raises(
        GuideFileError, match=r"guide\.pt.*has \['scale'\].*'loc' is .*\[2\].*\[3\]"
    ):
        load_guide(path, other)


class Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": "zoo-guide/1", "class": "MeanField", "x": payload}, path)
    with pytest.raises(GuideFileError, match="evil.pt"):
        load_guide(path, model)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(payload))
    with pytest.raises(GuideFileError, match="plain.pkl"):
        load_guide(plain, model)
    assert not marker.exists()


def test_unknown_classes_and_other_files_are_refused(tmp_path):
    torch.save({"format": "zoo-guide/1", "class": "AutoNormal"}, tmp_path / "a.pt")
    with pytest.raises(GuideFileError, match="'AutoNormal', which is not one of"):
        load_guide(tmp_path / "a.pt", model)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "b.pt")
    with pytest.raises(GuideFileError, match="b.pt is not a zoo guide file"):
        load_guide(tmp_path / "b.pt", model)
    with pytest.raises(GuideFileError, match="no guide file"):
        load_guide(tmp_path / "missing.pt", model)


def test_an_unset_guide_needs_example_arguments(tmp_path):
    with pytest.raises(ValueError, match="never run"):
        save_guide(MeanField(model), tmp_path / "g.pt")
    save_guide(MeanField(model), tmp_path / "g.pt", torch.zeros(1, 2))
    assert load_guide(tmp_path / "g.pt", model).is_setup
