"""Pretrained zoo models by name, with their model cards.

    >>> import zoo.pretrained
    >>> zoo.pretrained.names()                      # doctest: +SKIP
    ['bnn_toy', 'gmm_old_faithful', 'vae_digits']
    >>> vae = zoo.pretrained.load("vae_digits")     # doctest: +SKIP
    >>> images = vae.sample_prior(16)               # doctest: +SKIP

A pretrained model is a folder, laid out as the Hugging Face hub expects a model repository
(``huggingface_hub.upload_folder`` publishes it unchanged)::

    model.safetensors   the trained module's state dict: tensors only, no pickle
    config.yaml         the run's resolved config, which builds the model again
    card.json           the model card as data: what it is, the command that trained it, its
                        test metrics (the run's summary, so the results table's), seed,
                        versions, licence, and the SHA-256 of model.safetensors
    README.md           the same card for people (the hub shows it)

The shipped ones live in ``zoo/pretrained/models/`` (each under 100 KB); the larger ones
(megabytes) in ``results/pretrained/`` of a checkout, out of the wheel (see :func:`names`). :func:`export` turns any finished run folder into such a folder, and
:func:`load` takes a name or a folder. Loading checks the weights' digest against the card
and refuses a mismatch, naming the file. Building the model again needs its data set (the
shipped models' data sets ship with the zoo), because a zoo model takes its sizes from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pyro
import torch
import yaml
from pyro.util import get_rng_state, set_rng_state
from safetensors.torch import load_file, save_file

from zoo.errors import ZooError

MODELS = Path(__file__).with_name("models")
# the larger models (megabytes: the Fashion-MNIST ones) stay beside the results in a checkout
# of the repository, out of the wheel
BESIDE_RESULTS = Path(__file__).resolve().parents[2] / "results" / "pretrained"
WEIGHTS, CONFIG, CARD, README = "model.safetensors", "config.yaml", "card.json", "README.md"
LICENCE = "MIT"


class PretrainedError(ZooError):
    """A pretrained model that is unknown, incomplete, or whose weights fail their digest."""


def _places() -> list[Path]:
    return [place for place in (MODELS, BESIDE_RESULTS) if place.is_dir()]


def names() -> list[str]:
    """The pretrained models: those shipped in the package and, in a checkout of the
    repository, the larger ones kept in ``results/pretrained/``."""
    return sorted({p.name for place in _places() for p in place.iterdir() if (p / CARD).is_file()})


def folder(name: str | os.PathLike) -> Path:
    """The folder of a shipped model by name, or ``name`` itself if it is a folder."""
    path = Path(name)
    if (path / CARD).is_file():
        return path
    for place in _places():
        if (place / str(name) / CARD).is_file():
            return place / str(name)
    raise PretrainedError(
        f"no pretrained model {str(name)!r}: the pretrained models here are {', '.join(names())}, or "
        f"give a folder holding {CARD}, {CONFIG} and {WEIGHTS}"
    )


def card(name: str | os.PathLike) -> dict[str, Any]:
    """The model card of a pretrained model, as a dict."""
    return json.loads((folder(name) / CARD).read_text())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec(path: Path):
    from zoo.config import validate

    return validate(yaml.safe_load((path / CONFIG).read_text()))


def build(name: str | os.PathLike, device: str | torch.device = "cpu"):
    """The untrained model and its data set, built from the pretrained model's config."""
    return _build(_spec(folder(name)), device)


def _build(spec, device):
    from zoo.app import build_run_model, load_run_data

    # built as the run built it (the GMM's k-means++ starts draw from the seeded streams),
    # and the caller's random streams left as they were
    state = get_rng_state()
    try:
        pyro.set_rng_seed(spec.run.seed)
        data = load_run_data(spec, device)
        model = build_run_model(spec, data, device)
    finally:
        set_rng_state(state)
    return model, data


def load(name: str | os.PathLike, device: str | torch.device = "cpu", *, with_data: bool = False):
    """The trained model, with its guide, ready to evaluate, sample or predict.

    :param name: a shipped name (:func:`names`) or a pretrained folder.
    :param device: where its tensors go (``"cpu"``, ``"cuda"``).
    :param with_data: return ``(model, data)``, the data set it was trained and tested on.
    :raises PretrainedError: naming the weights file if its SHA-256 is not the card's.
    """
    model, data, _ = _load(folder(name), device)
    return (model, data) if with_data else model


def _load(path: Path, device):
    """The trained model, its data set and its validated config."""
    weights = path / WEIGHTS
    expected = card(path)["weights"]["sha256"]
    if not weights.is_file():
        raise PretrainedError(f"{weights} is missing: the pretrained folder is incomplete")
    if _sha256(weights) != expected:
        raise PretrainedError(
            f"{weights} does not match its model card: its SHA-256 is not {expected} (the "
            "file is damaged or was replaced); download or export it again"
        )
    spec = _spec(path)
    model, data = _build(spec, device)
    state = load_file(str(weights), device=str(torch.device(device)))
    model.load_state_dict(state)
    model.eval()
    _set_up_guide(model, data)
    return model, data, spec


def _set_up_guide(model, data) -> None:
    """Calls the guide once on two training rows, as training did: a guide that traces the
    model at its first call (AmortizedNormal) draws random numbers then, which would
    otherwise shift the first evaluation's draws. On a forked random stream, recorded by no
    handler."""
    x = data.train_x[:2]
    args = (x,) if data.train_y is None else (x, data.train_y[:2])
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.poutine.block():
        model.guide(*args, size=len(data.train_x))


def evaluate(name: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, float]:
    """The pretrained model's test metrics, computed again as the run computed them (the
    run's evaluation settings and evaluation seed): they equal the card's up to the
    arithmetic of another machine."""
    from zoo.app import final_evaluation

    model, data, spec = _load(folder(name), device)
    return final_evaluation(spec, model, data)


def export(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str,
    description: str,
    command: str | None = None,
) -> Path:
    """Turns a finished run folder (its ``summary.json``, ``config.yaml`` and checkpoint)
    into a pretrained folder ``out`` that :func:`load` reads and the Hugging Face hub
    accepts. The card's metrics are the run's summary's.

    :param command: the command that made the run, for the card.
    """
    from zoo.checkpoint import load_latest_checkpoint
    from zoo.train import CHECKPOINT_NAME

    run, out = Path(run), Path(out)
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise PretrainedError(f"{summary_path} is missing: export a run that finished")
    summary = json.loads(summary_path.read_text())
    state, _ = load_latest_checkpoint(run / CHECKPOINT_NAME)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state["module"].items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt", "zoo_model": name})
    (out / CONFIG).write_text(yaml.safe_dump(summary["config"], sort_keys=False))
    metrics = {k: v for k, v in summary["metrics"].items() if isinstance(v, (int, float))}
    model_card = {
        "name": name,
        "description": description,
        "model": summary["model"],
        "data": summary["data"],
        "seed": summary["seed"],
        "command": command or f"python -m zoo <the run's overrides> seed={summary['seed']}",
        "metrics": metrics,
        "epochs": summary.get("epochs"),
        "train_s": summary.get("time", {}).get("train_s"),
        "config_hash": summary.get("config_hash"),
        "versions": summary.get("versions", {}),
        "licence": LICENCE,
        "weights": {
            "file": WEIGHTS,
            "sha256": _sha256(out / WEIGHTS),
            "bytes": (out / WEIGHTS).stat().st_size,
            "parameters": sum(t.numel() for t in tensors.values()),
        },
        "config": summary["config"],
    }
    (out / CARD).write_text(json.dumps(model_card, indent=2) + "\n")
    (out / README).write_text(readme(model_card))
    return out


def readme(model_card: dict) -> str:
    """The model card for people: a hub README with its metadata block."""
    rows = "\n".join(
        f"| {k} | {v:.4f} |" if isinstance(v, float) and math.isfinite(v) else f"| {k} | {v} |"
        for k, v in model_card["metrics"].items()
    )
    versions = ", ".join(f"{k} {v}" for k, v in model_card["versions"].items())
    weights = model_card["weights"]
    return f"""---
license: {model_card["licence"].lower()}
library_name: zoo
tags: [pyro, probabilistic-programming, {model_card["model"]}]
---

# {model_card["name"]}

{model_card["description"]}

- Model: `{model_card["model"]}` on `{model_card["data"]}`, seed {model_card["seed"]}
- Trained by: `{model_card["command"]}` ({model_card["epochs"]} epochs)
- Weights: `{weights["file"]}`, {weights["parameters"]} numbers, {weights["bytes"]} bytes,
  SHA-256 `{weights["sha256"]}`
- Versions: {versions}
- Licence: {model_card["licence"]}

```python
import zoo.pretrained
model = zoo.pretrained.load("{model_card["name"]}")
```

## Test metrics

| metric | value |
| --- | --- |
{rows}
"""
