"""Param store names of the zoo's guides: unique within a process, also inside Pyro's
``AutoGuideList``, and the same in a fresh process for the same model."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import external_models as em
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoGuideList

from zoo.guides import AmortizedNormal, BayesByBackprop, MeanField


def vae_list():
    """The README's VAE pattern, with a MeanField for the global decoder weights."""
    guide = AutoGuideList(em.linear_vae, create_plates=lambda x: pyro.plate("data", x.shape[0]))
    guide.append(MeanField(poutine.block(em.linear_vae, expose=["w"])))
    guide.append(AmortizedNormal(em.linear_vae, em.Encoder(), site="z"))
    return guide


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_two_autoguidelists_trained_alternately_keep_their_own_parameters():
    """Pyro renames a list's parts "AutoGuideList.0", "AutoGuideList.1" in every list: the
    second list's encoder was never trained and its MeanField moved with the first's."""
    x = torch.randn(32, em.OBSERVED)
    first, second = vae_list(), vae_list()
    first(x), second(x)
    names = list(pyro.get_param_store().keys())
    assert len(names) == len(set(names)) == len(snapshot(first)) + len(snapshot(second))

    svis = [
        SVI(em.linear_vae, g, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO()) for g in (first, second)
    ]
    start = [snapshot(first), snapshot(second)]
    svis[0].step(x)
    assert all(torch.equal(v, start[1][k]) for k, v in snapshot(second).items())
    svis[1].step(x)
    for guide, before in zip((first, second), start):
        moved = {k for k, v in snapshot(guide).items() if not torch.equal(v, before[k])}
        assert moved == set(before)  # every parameter of each list was trained


CHILD = """
import sys, json, pyro, torch
import external_models as em
from zoo.guides import BayesByBackprop, MeanField

if sys.argv[2] == "other_first":  # another guide made first: a counter would shift the names
    MeanField(em.linear_regression)(torch.zeros(4, 3))
net = em.LogisticRegression(2)
guides = {"mf": MeanField(em.eight_schools), "bbb": BayesByBackprop(net)}
if sys.argv[2] == "save":
    pyro.set_rng_seed(0)
    guides["mf"](em.SCHOOLS_SIGMA, em.SCHOOLS_Y)
    guides["bbb"](torch.zeros(2, 2), torch.ones(2))
    for p in pyro.get_param_store().values():
        p.data.add_(torch.randn_like(p))  # a state no initialization gives
    pyro.get_param_store().save(sys.argv[1])
else:
    pyro.get_param_store().load(sys.argv[1])
    guides["mf"](em.SCHOOLS_SIGMA, em.SCHOOLS_Y)
    guides["bbb"](torch.zeros(2, 2), torch.ones(2))
out = {k: {n: v.tolist() for n, v in g.median().items()} for k, g in guides.items()}
print(json.dumps(out))
"""


def run_child(tmp_path, *args):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {"OMP_NUM_THREADS": "1", "PATH": ""}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store.pt"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_param_store_saved_in_one_process_loads_into_the_same_guides_in_another(tmp_path):
    saved = run_child(tmp_path, "save")
    assert run_child(tmp_path, "other_first") == saved


def test_names_are_unique_for_guides_of_one_model_and_stable_for_a_model():
    a, b = MeanField(em.linear_regression), MeanField(em.linear_regression)
    a(torch.zeros(4, 3)), b(torch.zeros(4, 3))
    assert a._pyro_name != b._pyro_name
    # both are the model's digest, the second numbered after the first; the first is numbered
    # too when this process gave the name out before (the test run twice, as mutmut runs it)
    first = re.fullmatch(r"(MeanField_[0-9a-f]{10})(?:_(\d+))?", a._pyro_name)
    second = re.fullmatch(re.escape(first.group(1)) + r"_(\d+)", b._pyro_name)
    assert second and int(second.group(1)) > int(first.group(2) or 0)
    net = em.LogisticRegression(2)
    guide = BayesByBackprop(net)
    guide(torch.zeros(2, 2), torch.ones(2))
    assert guide._pyro_name.startswith("BayesByBackprop_")
