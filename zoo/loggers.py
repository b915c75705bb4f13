"""Experiment trackers: where a run's per-epoch numbers, summary and figures go besides its
own files (the ``logger`` config group).

- ``jsonl`` (the default): nothing more than the run folder's ``metrics.jsonl`` and
  ``summary.json``, which every run writes whatever its logger.
- ``tensorboard``: each epoch's numbers as scalars (step = epoch), the figures as images and
  the summary as text, in ``logger.log_dir`` (default: ``<run folder>/tensorboard``), through
  ``torch.utils.tensorboard``.
- ``mlflow``: the settings as params, each epoch's numbers as metrics (step = epoch), the
  summary and the figures as artifacts, in the experiment ``logger.experiment`` of the
  tracking server ``logger.tracking_uri`` (default: a SQLite database ``mlflow.db`` in the
  folder the command was started from, with its artifacts in ``mlartifacts/`` beside it).

Both are optional extras (``pip install -e ".[trackers]"``); choosing one that is not
installed is refused before anything is trained, naming the extra. A logger never changes
the trained parameters, so it is not part of a run's identity, and a resumed run may take
another. A resumed run logs the epochs it trains to a new tracker run (MLflow) or appends
them to the same event folder (TensorBoard).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from zoo.errors import ConfigError
from zoo.schema import Settings, setting


class JsonlSettings(Settings):
    """``logger=jsonl``: the run folder's own files only."""

    name: Literal["jsonl"] = setting("jsonl", "jsonl, tensorboard or mlflow", trains=False)


class TensorBoardSettings(Settings):
    """``logger=tensorboard``: the event folder."""

    name: Literal["tensorboard"] = setting(
        "tensorboard", "jsonl, tensorboard or mlflow", trains=False
    )
    log_dir: str | None = setting(
        None, "a folder, or null for <run folder>/tensorboard", trains=False
    )


class MLflowSettings(Settings):
    """``logger=mlflow``: the tracking server, experiment and run name."""

    name: Literal["mlflow"] = setting("mlflow", "jsonl, tensorboard or mlflow", trains=False)
    tracking_uri: str | None = setting(
        None,
        "a tracking URI (sqlite:///path.db, http://host:port, a folder), or null for "
        "sqlite:///mlflow.db in the folder the command was started from",
        trains=False,
    )
    #: the MLflow experiment the run is logged to
    experiment: str = setting("zoo", "an experiment name", trains=False, min_length=1)
    run_name: str | None = setting(None, "a name, or null for the run folder's", trains=False)


LoggerSettings = JsonlSettings | TensorBoardSettings | MLflowSettings
LOGGERS: dict[str, type[Settings]] = {
    "jsonl": JsonlSettings,
    "tensorboard": TensorBoardSettings,
    "mlflow": MLflowSettings,
}


def _numbers(record: dict) -> dict[str, float]:
    """The finite numbers of an epoch record (trackers take no strings, NaN or nesting)."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RunLogger:
    """What the app tells a tracker: the settings once, each epoch's record, and at the end
    the summary and the figures. The base class is the ``jsonl`` logger: the run folder's
    own files are the record, so it does nothing more."""

    def start(self, config: dict) -> None:
        """Records the run's validated settings, once, before training."""
        pass

    def log_epoch(self, record: dict, epoch: int) -> None:
        """Records one epoch's numbers (the line of ``metrics.jsonl``), at step ``epoch``."""
        pass

    def finish(self, summary: dict, figures: dict[str, str]) -> None:
        """Records the summary and the figures (``{name: path}``) of a run that finished."""
        pass

    def close(self) -> None:
        """Releases the tracker, whether or not the run finished."""
        pass


class TensorBoardLogger(RunLogger):
    """Writes scalars, images and text to a TensorBoard event folder
    (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def start(self, config: dict) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in _flat(config).items())
        self.writer.add_text("config", text, 0)

    def log_epoch(self, record: dict, epoch: int) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def finish(self, summary: dict, figures: dict[str, str]) -> None:
        import matplotlib.image

        step = summary.get("epochs") or 0
        for name, path in figures.items():
            image = matplotlib.image.imread(path)  # (H, W, C) floats in [0, 1]
            self.writer.add_image(f"figures/{name}", image, step, dataformats="HWC")
        self.writer.add_text(
            "summary", "    " + json.dumps(summary, indent=2).replace("\n", "\n    "), step
        )
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowLogger(RunLogger):
    """Logs params, metrics and artifacts to an MLflow run."""

    def __init__(self, settings: MLflowSettings, run_name: str) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = settings.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(settings.experiment) is None:
            artifacts = None
            if uri.startswith("sqlite:///"):  # beside the database, not in the current folder
                artifacts = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
            mlflow.create_experiment(settings.experiment, artifact_location=artifacts)
        mlflow.set_experiment(settings.experiment)
        self.run = mlflow.start_run(run_name=settings.run_name or run_name)
        self.tracking_uri = uri

    def start(self, config: dict) -> None:
        # MLflow keeps a param's value as text of at most 6000 characters
        self.mlflow.log_params({k: str(v)[:6000] for k, v in _flat(config).items()})

    def log_epoch(self, record: dict, epoch: int) -> None:
        self.mlflow.log_metrics(_numbers(record), step=epoch)

    def finish(self, summary: dict, figures: dict[str, str]) -> None:
        self.mlflow.log_dict(summary, "summary.json")
        for path in figures.values():
            self.mlflow.log_artifact(path, artifact_path="figures")

    def close(self) -> None:
        self.mlflow.end_run()


def make_logger(settings: Settings, out_dir: str | os.PathLike) -> RunLogger:
    """The tracker a run's ``logger`` settings choose, started for the run folder ``out_dir``.

    :raises ConfigError: when the tracker's library is not installed, naming the extra.
    """
    out_dir = Path(out_dir)
    try:
        if isinstance(settings, TensorBoardSettings):
            return TensorBoardLogger(
                Path(settings.log_dir) if settings.log_dir else out_dir / "tensorboard"
            )
        if isinstance(settings, MLflowSettings):
            return MLflowLogger(settings, run_name=out_dir.name)
    except ImportError as error:
        raise ConfigError(
            f"logger={settings.name} needs {error.name or settings.name}, which is not installed: "
            'pip install -e ".[trackers]" (or pick logger=jsonl, the default).'
        ) from None
    return RunLogger()
