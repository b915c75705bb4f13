"""Bad inputs through the real CLI (every class of issue 13's hostile inputs; the rules of
each setting are property-tested in tests/test_config.py): each exits non-zero with a message that names
the key and what would be valid, and no traceback unless HYDRA_FULL_ERROR=1.

The default suite runs the whole table through ``zoo.__main__.main`` (the real Hydra entry
point, with sys.argv set) in one child process, since one Python start-up per case costs
seconds; the slow suite runs every case as its own ``python -m zoo``.
"""

import gzip
import json
import subprocess
import sys

import pytest
import torch
from faultkit import write_mnist_like, zoo, zoo_env

from zoo.data.mnist import FILES

HYDRA_GROUP = "Available options in"
# (overrides, what the message must name, what it must offer as valid); {tmp} and friends
# are filled in per test. Our own errors are one line "zoo: error: <key> = ... valid ...".
BAD = [
    (["model=vea"], "model/vea", f"{HYDRA_GROUP} 'model'"),
    (["data=cifar10"], "data/cifar10", f"{HYDRA_GROUP} 'data'"),
    (["optim=sgd"], "optim/sgd", f"{HYDRA_GROUP} 'optim'"),
    (["anneal=exponential"], "anneal/exponential", f"{HYDRA_GROUP} 'anneal'"),
    (["experiment=vae_cifar"], "experiment/vae_cifar", f"{HYDRA_GROUP} 'experiment'"),
    (["trainer.epoch=3"], "trainer.epoch", "+trainer.epoch=3"),
    (["+trainer.epochz=3"], "trainer.epochz", "valid: epochs, batch_size"),
    (["+model.depth=3"], "model.depth", "valid: name, evaluation, periodic_evaluation, latent_dim, hidden_dims"),
    (["trainer.epochs=0"], "trainer.epochs", "an integer >= 1"),
    (["trainer.epochs=-3"], "trainer.epochs", "an integer >= 1"),
    (["trainer.epochs=2.5"], "trainer.epochs", "an integer >= 1"),
    (["trainer.epochs=abc"], "trainer.epochs", "an integer >= 1"),
    (["trainer.batch_size=0"], "trainer.batch_size", "an integer >= 1"),
    (["trainer.batch_size=-8"], "trainer.batch_size", "an integer >= 1"),
    (["trainer.batch_size=100000"], "trainer.batch_size", "an integer from 1 to 1437"),
    (["trainer.elbo=tracee"], "trainer.elbo", "trace (Trace_ELBO)"),
    (["trainer.num_particles=0"], "trainer.num_particles", "an integer >= 1"),
    (["trainer.eval_every=0"], "trainer.eval_every", "an integer >= 1"),
    (["trainer.validate=maybe"], "trainer.validate", "true or false"),
    (["trainer.skip_nonfinite=-1"], "trainer.skip_nonfinite", "an integer >= 0"),
    (["optim.optim_args.lr=-1"], "optim.optim_args.lr", "a finite number > 0"),
    (["optim.optim_args.lr=0"], "optim.optim_args.lr", "a finite number > 0"),
    (["optim.optim_args.lr=fast"], "optim.optim_args.lr", "a finite number > 0"),
    (["optim.optim_args.lr=inf"], "optim.optim_args.lr", "a finite number > 0"),
    (["optim.optim_args.betas=[0.9,1.5]"], "optim.optim_args.betas", "two numbers in [0, 1)"),
    (["optim=clipped_adam", "optim.optim_args.clip_norm=-1"], "clip_norm", "a finite number > 0"),
    (["optim=clipped_adam", "optim.optim_args.lrd=2"], "optim.optim_args.lrd", "(0, 1]"),
    (["anneal=linear", "anneal.beta_min=1.5"], "anneal.beta_min", "a number in [0, 1]"),
    (["anneal=linear", "anneal.beta_min=-0.1"], "anneal.beta_min", "a number in [0, 1]"),
    (["anneal=linear", "anneal.warmup_epochs=-1"], "anneal.warmup_epochs", ">= 0"),
    (["anneal=sigmoid", "anneal.steepness=0"], "anneal.steepness", "a finite number > 0"),
    (["anneal=cyclical", "anneal.ramp=0"], "anneal.ramp", "a number in (0, 1]"),
    (["anneal=cyclical", "anneal.cycles=0"], "anneal.cycles", "an integer >= 1"),
    (["anneal.per=batch"], "anneal.per", "step (beta moves every iteration) or epoch"),
    (["seed=-1"], "seed", "an integer from 0 to 2**32 - 1"),
    (["seed=abc"], "seed", "an integer from 0 to 2**32 - 1"),
    (["seed=4294967296"], "seed", "an integer from 0 to 2**32 - 1"),
    (["device=tpu"], "device", "auto, cpu or cuda"),
    (["threads=0"], "threads", "an integer >= 1, or null"),
    (["trainer.elbo=jit", "anneal=linear"], "trainer.elbo", "Use trainer.elbo=trace or meanfield"),
    (["data=old_faithful", "model=gmm", "data.folds=5", "data.fold=7"], "fold = 7", "0 to 4"),
    (["resume=maybe"], "resume", "true or false"),
    (["resume=true"], "resume", "start without resume=true"),
    (["model.latent_dim=0"], "model.latent_dim", "an integer >= 1"),
    (["model.hidden_dims=[64,0]"], "model.hidden_dims", "a list of integers >= 1"),
    (["model.evaluation.iw_samples=-5"], "model.evaluation.iw_samples", "an integer >= 0"),
    (["model.activation=sigmoidd"], "activation", "softplus, relu, tanh or elu"),
    (["data.root={tmp}/nowhere"], "data.root", "an existing folder"),
    (["hydra.run.dir={tmp}/afile/run"], "hydra.run.dir", "a folder that can be created"),
    (["hydra.run.dir=/proc/zoo/run"], "hydra.run.dir", "a folder that can be created"),
    # optimizer arguments, under either implementation; a misspelt one is not ignored
    (["+optim.optim_args.eps=-1"], "optim.optim_args.eps", "a finite number > 0"),
    (["optim.implementation=per_parameter", "+optim.optim_args.eps=-1"], "optim.optim_args.eps", "> 0"),
    (["+optim.optim_args.weight_decy=0.5"], "optim.optim_args.weight_decy", "did you mean optim.optim_args.weight_decay"),
    (["+optim.optim_args._target_=builtins.open"], "optim.optim_args._target_", "valid: lr, betas"),
    (["optim._target_=builtins.open"], "optim._target_", "pyro.optim.ClippedAdam, zoo.optim.Adam"),
    # the GMM's build settings
    (["model=gmm", "model.loc_spread=-1"], "model.loc_spread", "a finite number > 0"),
    (["model=gmm", "model.restart_batch_size=0"], "model.restart_batch_size", "an integer >= 1"),
    (["model=gmm", "model.init_points=0"], "model.init_points", "an integer >= model.components"),
    (["model=gmm", "model.init_points=1"], "model.init_points = 1", "k-means++ needs a row per component"),
    (["model=gmm", "model.restart_lr=-1"], "model.restart_lr", "a finite number > 0"),
    (["model=gmm", "model.restart_particles=0"], "model.restart_particles", "an integer >= 1"),
    (["model=gmm", "model.restart_steps=-1"], "model.restart_steps", "an integer >= 0"),
    (["model=gmm", "model.form=enumerated"], "model.form", "trainer.elbo=traceenum"),
    (["model=gmm", "model.evaluation.mc_samples=1.5"], "model.evaluation.mc_samples", "an integer >= 0"),
    # the BNN's settings, its evaluation's and its figure's included
    (["model=bnn", "model.init_rho=[1]"], "model.init_rho", "two numbers [low, high]"),
    (["model=bnn", "model.init_rho=abc"], "model.init_rho", "two numbers [low, high]"),
    (["model=bnn", "model.init_rho=[-3,-4]"], "model.init_rho", "low <= high"),
    (["model=bnn", "model.neg_log_sigma1=-1000"], "model.neg_log_sigma1", "from -20 to 20"),
    (["model=bnn", "model.learn_noise=maybe"], "model.learn_noise", "true or false"),
    (["model=bnn", "model.guide=map", "model.dropout=0.5"], "model.dropout", "guide=map needs dropout = 0"),
    (["model=bnn", "model.evaluation.ood=cifar10"], "model.evaluation.ood", "each must be noise or one of"),
    (["model=bnn", "model.evaluation.num_samples=0"], "model.evaluation.num_samples", "an integer >= 1"),
    (["model=bnn", "model.evaluation.calibration_bins=0"], "model.evaluation.calibration_bins", "an integer >= 1"),
    (["model=bnn", "model.periodic_evaluation.num_samples=0"], "model.periodic_evaluation.num_samples", "an integer >= 1"),
    (["model=bnn", "model.plot_range=[1]"], "model.plot_range", "two numbers [low, high]"),
    (["model=bnn", "data=digits", "model.evaluation.ood=old_faithful"], "model.evaluation.ood", "shape (2,) and the model's (8, 8)"),
    (["optim.clip_args={{clip_norm:-1}}"], "optim.clip_args.clip_norm", "a finite number > 0, or null"),
    (["model.name=gan"], "model.name", "one of bnn, gmm, vae"),
    # data options of the wrong type
    (["model=gmm", "data.test_fraction=abc"], "data.test_fraction", "a number in (0, 1)"),
    (["model=bnn", "data.n_train=abc"], "data.n_train", "an integer >= 1"),
    (["model=gmm", "data=synthetic_gmm", "data.seed=abc"], "data.seed", "an integer from 0"),
    (["model=bnn", "data.x_min=1", "data.x_max=0"], "data.x_max", "above x_min"),
    # a model on data it cannot fit
    (["model=vae", "data=old_faithful"], "data=old_faithful", "use data=digits, fashion_mnist or mnist"),
    (["model=vae", "data=toy_regression"], "data=toy_regression", "use data=digits"),
    (["model=gmm", "data=digits"], "data=digits", "use data=old_faithful or synthetic_gmm"),
    (["model=gmm", "data.test_fraction=0.001"], "no test rows", "data.test_fraction"),
    (["model=gmm", "model.components=3", "data=synthetic_gmm", "data.n=3", "trainer.batch_size=1"], "2 training rows", "fewer than the 3 components"),
    # interpolations that cannot be resolved
    (["seed=${{oc.env:ZOO_TEST_UNSET_VARIABLE}}"], "seed cannot be resolved", "ZOO_TEST_UNSET_VARIABLE"),
    (["seed=${{seed}}"], "seed cannot be resolved", "a plain value"),
    (["seed=${{no_such_key}}"], "seed cannot be resolved", "no_such_key"),
    # bad data behind a valid key: the message names the file and the problem
    (["data=mnist", "data.root={tmp}/truncated"], "train-images-idx3-ubyte", "is truncated"),
    (["data=mnist", "data.root={tmp}/magic"], "t10k-labels-idx1-ubyte", "bad magic number"),
    (["data=mnist", "data.root={tmp}/empty"], "lacks train-images-idx3-ubyte", "Point root"),
    (["data.root={tmp}/nan"], "digits.csv.gz, row 2", "not a finite number"),
]
if not torch.cuda.is_available():
    BAD.append((["device=cuda"], "device", "use device=cpu or device=auto"))


@pytest.fixture
def bad_inputs(tmp_path):
    """The files that the table's {tmp} paths point at."""
    (tmp_path / "afile").write_text("a file where a folder should be\n")
    write_mnist_like(tmp_path / "truncated")
    images = tmp_path / "truncated" / FILES["train_x"]
    images.write_bytes(images.read_bytes()[:-100])
    write_mnist_like(tmp_path / "magic")
    (tmp_path / "magic" / FILES["test_y"]).write_bytes(b"\x12\x34\x08\x01" + bytes(14))
    (tmp_path / "empty").mkdir()
    (tmp_path / "nan").mkdir()
    rows = [[0] * 64 + [1], [0] * 63 + ["nan", 1]]
    with gzip.open(tmp_path / "nan" / "digits.csv.gz", "wt") as f:
        f.write("\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return tmp_path


def cases(tmp):
    for i, (overrides, key, valid) in enumerate(BAD):
        args = [a.format(tmp=tmp) for a in overrides]
        if not any(a.startswith("hydra.run.dir=") for a in args):
            args.append(f"hydra.run.dir={tmp}/run{i}")
        yield args, key, valid


DRIVER = r"""
import contextlib, io, json, os, sys, traceback
from hydra.core.global_hydra import GlobalHydra
from zoo.__main__ import main
cases_path, results_path = sys.argv[1:3]
results = []
for args, full_error in json.load(open(cases_path)):
    os.environ.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = ["zoo", *args]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    GlobalHydra.instance().clear()
    results.append({"code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
json.dump(results, open(results_path, "w"))
"""


def check(args, key, valid, code, stderr):
    where = f"{args}: {stderr}"
    assert code != 0, where
    assert "Traceback" not in stderr, where
    assert key in stderr and valid in stderr, where
    if "zoo: error:" in stderr:  # ours: exactly one paragraph of one line
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("zoo: error:"), where


def test_every_bad_input_is_refused_by_the_cli(bad_inputs, tmp_path):
    table = list(cases(bad_inputs))
    # and with HYDRA_FULL_ERROR=1 the traceback is shown
    requests = [(args, False) for args, _, _ in table] + [(table[8][0], True)]
    (tmp_path / "cases.json").write_text(json.dumps(requests))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, tmp_path / "cases.json", tmp_path / "results.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=zoo_env(),
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    failures = []
    for (args, key, valid), got in zip(table, results):
        try:
            check(args, key, valid, got["code"], got["stderr"])
        except AssertionError as e:  # every case that fails, not only the first
            failures.append(str(e).splitlines()[0])
    assert not failures, "\n".join(failures)
    assert "Traceback" in results[-1]["stderr"] and results[-1]["code"] != 0
    # refused before anything trained: not one checkpoint in any of the cases' folders
    assert not list(bad_inputs.rglob("checkpoint*.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BAD)), ids=lambda i: " ".join(BAD[i][0]))
def test_each_bad_input_in_its_own_process(bad_inputs, index):
    args, key, valid = list(cases(bad_inputs))[index]
    result = zoo(*args, cwd=bad_inputs)
    check(args, key, valid, result.returncode, result.stderr)
