"""zoo.guides.naming by hand: the digest of a stable name, the numbers appended when a name
was given out before, the process-wide counter, renaming a module tree, and a guide that
keeps its own name when it becomes another module's submodule or is set up again."""

import hashlib
import re
import uuid

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from zoo.guides import BayesByBackprop
from zoo.guides.naming import rename, stable_name, unique_name


def test_a_stable_name_is_the_prefix_and_ten_hex_digits_of_the_signature_then_numbered():
    signature = f"a signature never used before: {uuid.uuid4()}"
    base = "Guide_" + hashlib.sha256(signature.encode()).hexdigest()[:10]
    names = [stable_name("Guide", signature) for _ in range(3)]
    assert names == [base, f"{base}_1", f"{base}_2"]


def test_unique_names_count_up_by_one():
    first, second = unique_name("VAE"), unique_name("VAE")
    a, b = (int(re.fullmatch(r"VAE_(\d+)", name).group(1)) for name in (first, second))
    assert b == a + 1


def test_rename_reaches_every_pyro_submodule_and_only_those():
    root = PyroModule()
    root.child = PyroModule()
    root.child.grandchild = PyroModule()
    root.plain = torch.nn.Linear(1, 1)
    rename(root, "Root_x")
    assert root._pyro_name == "Root_x"
    assert root.child._pyro_name == "Root_x.child"
    assert root.child.grandchild._pyro_name == "Root_x.child.grandchild"
    assert not hasattr(root.plain, "_pyro_name")


def model():
    pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def test_a_guide_set_up_then_made_a_submodule_keeps_its_own_name():
    guide = BayesByBackprop(model).setup()
    name = guide._pyro_name
    parent = PyroModule()
    parent.guide = guide
    assert guide._pyro_name == name and guide.locs._pyro_name == f"{name}.locs"


def test_a_guide_set_up_again_keeps_its_name():
    guide = BayesByBackprop(model).setup()
    name = guide._pyro_name
    guide._setup_prototype()
    assert guide._pyro_name == name
