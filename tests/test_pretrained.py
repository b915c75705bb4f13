"""The pretrained models: every shipped one loads, its card's metrics are what a fresh
evaluation of the loaded weights gives, a damaged weights file is refused by name, the
quick-start lines work, and a run folder exports to a folder that loads again."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from zoo_subprocess import zoo_env

import zoo.pretrained as pretrained

SHIPPED = ["bnn_toy", "gmm_old_faithful", "vae_digits"]
# kept in results/pretrained of the checkout (megabytes), trained on Fashion-MNIST
BESIDE_RESULTS = ["bnn_fashion_mnist", "vae_fashion_mnist"]
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST files not here")


def test_names_lists_the_shipped_models_and_those_beside_the_results():
    assert pretrained.names() == sorted(SHIPPED + BESIDE_RESULTS)
    for name in SHIPPED:
        assert pretrained.folder(name).parent == pretrained.MODELS
    for name in BESIDE_RESULTS:
        assert pretrained.folder(name).parent == pretrained.BESIDE_RESULTS


@pytest.mark.parametrize(
    "name",
    SHIPPED + [pytest.param(n, marks=[pytest.mark.slow, needs_fashion]) for n in BESIDE_RESULTS],
)
def test_a_fresh_evaluation_of_the_loaded_weights_gives_the_cards_metrics(name):
    card = pretrained.card(name)
    metrics = pretrained.evaluate(name)
    # the run's own evaluation seed and settings: Monte Carlo metrics are the same draws too
    for key, value in card["metrics"].items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@needs_fashion
def test_the_fashion_vae_loads_with_the_cards_deterministic_metrics():
    # the closed-form KL and the active units do not depend on draws; the K = 5000 log p(x)
    # takes minutes and is checked in the slow test above
    model, data = pretrained.load("vae_fashion_mnist", with_data=True)
    with torch.no_grad():
        metrics = model.evaluate(data, iw_samples=0)
    card = pretrained.card("vae_fashion_mnist")["metrics"]
    assert metrics["test/kl"] == pytest.approx(card["test/kl"], rel=1e-6)
    assert metrics["test/active_units"] == card["test/active_units"]


@pytest.mark.parametrize("name", SHIPPED + BESIDE_RESULTS)
def test_the_card_says_what_a_user_needs(name):
    card = pretrained.card(name)
    for key in (
        "description",
        "model",
        "data",
        "seed",
        "command",
        "metrics",
        "versions",
        "licence",
        "config",
    ):
        assert card[key] not in (None, "", {}), key
    assert card["command"].startswith("python -m zoo ")
    folder = pretrained.folder(name)
    weights = folder / card["weights"]["file"]
    assert weights.stat().st_size == card["weights"]["bytes"]
    # small enough to ship in the package, or kept beside the results
    assert (card["weights"]["bytes"] < 100_000) == (name in SHIPPED)
    readme = (folder / "README.md").read_text()
    assert readme.startswith("---\nlicense: mit\n") and card["weights"]["sha256"] in readme


def test_the_quick_start_lines_load_and_sample():
    vae = pretrained.load("vae_digits")
    images = vae.sample_prior(16)
    assert images.shape == (16, 64) and ((images >= 0) & (images <= 1)).all()


def test_a_damaged_weights_file_is_refused_naming_it(tmp_path):
    copy = tmp_path / "gmm"
    shutil.copytree(pretrained.folder("gmm_old_faithful"), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(
        pretrained.PretrainedError, match=rf"{weights}.*does not match its model card"
    ):
        pretrained.load(copy)


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(
        pretrained.PretrainedError,
        match="the pretrained models here are bnn_fashion_mnist, bnn_toy, gmm_old_faithful, vae_digits, vae_fashion_mnist",
    ):
        pretrained.card("vae_mnist")


def test_a_run_folder_exports_to_a_pretrained_folder_that_loads(tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "zoo",
        "model=vae",
        "trainer.epochs=2",
        "model.evaluation.iw_samples=10",
        "trainer.progress=false",
        f"hydra.run.dir={run}",
    ]
    subprocess.run(command, check=True, env=zoo_env(), capture_output=True, timeout=300)
    out = tmp_path / "mine"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.pretrained",
            "export",
            str(run),
            str(out),
            "--name",
            "mine",
            "--command",
            "python -m zoo model=vae trainer.epochs=2",
        ],
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    card = pretrained.card(out)
    assert card["metrics"] == {k: v for k, v in summary["metrics"].items()}
    model = pretrained.load(out)
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["module"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    shown = subprocess.run(
        [sys.executable, "-m", "zoo.pretrained", "show", str(out)],
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(shown.stdout)["weights"]["sha256"] == card["weights"]["sha256"]


def test_export_refuses_a_run_that_did_not_finish(tmp_path):
    with pytest.raises(pretrained.PretrainedError, match=r"summary.json is missing"):
        pretrained.export(tmp_path, tmp_path / "out", name="x", description="y")


def test_the_readme_quick_start_example_runs_as_written():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    quick_start = readme[
        readme.index("## Quick start") : readme.index("\n## ", readme.index("## Quick start") + 5)
    ]
    (block,) = [b for b in quick_start.split("```python\n")[1:]]
    namespace: dict = {}
    exec(block.split("```")[0], namespace)
    assert namespace["images"].shape == (16, 64)


def test_list_prints_every_shipped_model_with_its_size():
    result = subprocess.run(
        [sys.executable, "-m", "zoo.pretrained", "list"],
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(SHIPPED + BESIDE_RESULTS)
    assert "vae on digits, 78 KB: test/elbo -23.7" in result.stdout


def test_loading_leaves_the_callers_random_streams_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pretrained.load("gmm_old_faithful")
    assert torch.equal(torch.rand(3), expected)
