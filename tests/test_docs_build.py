"""The documentation builds with warnings as errors: a broken cross-reference, a bad include,
a docstring autodoc cannot parse, or a key that conf/ sets and no settings class declares (the
config reference's generator warns of it) fails the suite. CI's fast suite runs this; the same
build by hand is ``sphinx-build -W -b html docs docs/_build/html``.
"""

import subprocess
import sys
from pathlib import Path

from zoo_subprocess import zoo_env

ROOT = Path(__file__).resolve().parents[1]


def test_sphinx_builds_the_docs_without_a_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    html = tmp_path / "html"
    # the pages a newcomer looks for, one click from the index
    index = (html / "index.html").read_text()
    for page in ("api/index.html", "reference/config.html", "examples/train_by_name.html",
                 "examples/own_guide.html", "examples/reproduce_row.html"):
        assert page in index, page
    api = "".join(p.read_text() for p in (html / "api").glob("*.html"))
    for name in ("zoo.guides.MeanField", "zoo.handlers.kl_annealing", "zoo.train.Trainer",
                 "zoo.data.load_dataset", "zoo.pretrained.load", "zoo.schedules.linear"):
        assert f'id="{name}"' in api, name
    config = (html / "reference" / "config.html").read_text()
    for key in ("trainer.sampling", "model.latent_dim", "optim.optim_args.lr", "anneal.warmup_epochs"):
        assert key in config, key
