"""A composed config, checked against the components' settings before anything is built.

Each config group is validated by the settings class of the component it configures, which
lives beside that component (:class:`~zoo.train.TrainSettings`, ``MODELS[name].Settings``,
``DATASET_SETTINGS[name]``, ``OPTIMIZERS[_target_]``, ``SCHEDULES[name]``; see
:mod:`zoo.schema`). :func:`validate` returns them as one :class:`RunSpec` or raises one
:class:`~zoo.errors.ConfigError` whose paragraph names every key at fault and what would be
valid. Hydra itself refuses unknown config group options and keys that are not in the
config (:mod:`zoo.hints` then names the valid keys); :mod:`zoo.rundir` checks the output
folder, which Hydra creates before any of our code runs.

The identity of a run (:meth:`RunSpec.identity_hash`) covers only the settings that can change
the trained parameters, so a resumed run may change its evaluation, figure and display
settings (:func:`compare_runs` says which changed, and which would forbid the resume).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from zoo.data.base import DATASET_SETTINGS, DataSettings
from zoo.errors import ConfigError
from zoo.loggers import LOGGERS
from zoo.models import MODELS
from zoo.models.base import ModelSettings
from zoo.optim import OPTIMIZERS, OptimSettings
from zoo.schedules import SCHEDULES, ScheduleSettings
from zoo.schema import Settings, describe_errors, setting, trains_only
from zoo.train import TrainSettings


class RunSettings(Settings):
    """The top-level keys of ``conf/config.yaml``: how ``zoo.app.run`` runs the experiment."""

    #: the seed of the run's random streams (torch, Python): the same seed, the same numbers
    seed: int = setting(0, "an integer from 0 to 2**32 - 1", ge=0, le=2**32 - 1)
    # the device's kind joins the identity once resolved (RunSpec.identity), not the word "auto"
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto, cpu or cuda", trains=False)
    threads: int | None = setting(
        None, "an integer >= 1, or null for torch's default", trains=False, ge=1
    )
    resume: bool = setting(False, "true or false", trains=False)
    overwrite: bool = setting(False, "true or false", trains=False)
    # what python -m zoo returns for a sweeper to optimize (hparams_search=..._optuna)
    objective: str | None = setting(
        None,
        "a metric of the run's summary, e.g. test/elbo, or null for none",
        trains=False,
        min_length=1,
    )


# config group -> (the key that picks the settings class, the classes by that key's value)
CHOSEN_BY: dict[str, tuple[str, dict[str, type[Settings]]]] = {
    "model": ("name", {name: model.Settings for name, model in MODELS.items()}),
    "data": ("name", DATASET_SETTINGS),
    "optim": ("_target_", OPTIMIZERS),
    "anneal": ("name", SCHEDULES),
    "logger": ("name", LOGGERS),
}
SECTIONS = ("model", "data", "optim", "trainer", "anneal", "logger")
# groups a config may lack, with the values they then take: configs saved before the group
# existed (run folders, pretrained models) still validate
OPTIONAL_SECTIONS = {"logger": {"name": "jsonl"}}
SCHEDULES_UNDER_JIT = ("none", "constant")


@dataclass(frozen=True)
class RunSpec:
    """A validated config: one settings object per config group."""

    run: RunSettings
    model: ModelSettings
    data: DataSettings
    optim: OptimSettings
    trainer: TrainSettings
    anneal: ScheduleSettings
    logger: Settings
    #: the model's evaluation settings with ``model.periodic_evaluation`` applied
    periodic_evaluation: Settings

    def sections(self) -> dict[str, Settings]:
        return {"run": self.run, **{name: getattr(self, name) for name in SECTIONS}}

    def values(self) -> dict[str, dict]:
        """Every setting, defaults filled in, by section (``run`` holds the top-level keys)."""
        return {name: s.model_dump(by_alias=True) for name, s in self.sections().items()}

    def training_values(self) -> dict[str, dict]:
        """The settings that can change the trained parameters."""
        values = {
            name: trains_only(type(s), s.model_dump(by_alias=True))
            for name, s in self.sections().items()
        }
        # a group with nothing that trains (the logger) is no part of the identity: runs made
        # before it existed keep their hash
        return {name: v for name, v in values.items() if v or name not in OPTIONAL_SECTIONS}

    def identity_hash(self, device: str | None = None) -> str:
        """A short hash of :meth:`training_values` and the resolved device kind."""
        values = {**self.training_values(), "device": device}
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _resolved(cfg: DictConfig | dict) -> dict:
    """The config as plain values, with a one-paragraph error for an interpolation that
    cannot be resolved (an unset environment variable, a missing or recursive key)."""
    if isinstance(cfg, dict):
        return cfg
    if "hydra" in cfg:  # a callback's config: Hydra's node has interpolations of its own
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "the config"
        reason = str(e).splitlines()[0]
        raise ConfigError(
            f"{key} cannot be resolved: {reason}. Give {key} a plain value, or define what "
            "it refers to (an interpolation such as ${oc.env:NAME} needs that variable set)."
        ) from e


def _section(name: str, values: Any) -> tuple[type[Settings] | None, list[str]]:
    """The settings class for config group ``name``, or why there is none."""
    if name == "trainer":
        return TrainSettings, []
    key, classes = CHOSEN_BY[name]
    chosen = values.get(key) if isinstance(values, dict) else None
    if chosen not in classes:
        valid = ", ".join(sorted(classes))
        return None, [f"{name}.{key} = {chosen!r} is not valid: it must be one of {valid}."]
    return classes[chosen], []


def _validate(cls: type[BaseModel], values: Any, prefix: str, problems: list[str]) -> Any:
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        problems.extend(describe_errors(e, cls, prefix))
        return None


def validate(cfg: DictConfig | dict) -> RunSpec:
    """Checks every setting of a composed config (no data is read, nothing is built).

    :raises ConfigError: naming each key at fault, its value and what would be valid.
    """
    values = _resolved(cfg)
    problems: list[str] = []
    # Hydra's own node, present in the config a Hydra callback sees, is Hydra's to check
    top = {k: v for k, v in values.items() if k not in (*SECTIONS, "hydra")}
    parsed: dict[str, Any] = {"run": _validate(RunSettings, top, "", problems)}
    for name in SECTIONS:
        section = values.get(name, OPTIONAL_SECTIONS.get(name))
        if section is None:
            problems.append(f"the config has no {name} group: it needs one ({name}=...).")
            continue
        cls, why = _section(name, section)
        problems.extend(why)
        parsed[name] = _validate(cls, section, name, problems) if cls else None
    model = parsed.get("model")
    if model is not None:
        merged = {**model.evaluation.model_dump(), **model.periodic_evaluation}
        parsed["periodic_evaluation"] = _validate(
            type(model.evaluation), merged, "model.periodic_evaluation", problems
        )
    if not problems:
        problems.extend(_combination_problems(parsed))
    if problems:
        raise ConfigError(" ".join(problems))
    return RunSpec(**parsed)


def _combination_problems(parsed: dict[str, Any]) -> list[str]:
    """Settings of different groups that cannot go together."""
    trainer, anneal, model = parsed["trainer"], parsed["anneal"], parsed["model"]
    problems = []
    if trainer.elbo == "jit" and anneal.name not in SCHEDULES_UNDER_JIT:
        problems.append(
            f"trainer.elbo = 'jit' is not valid with anneal={anneal.name}: JitTrace_ELBO "
            "compiles beta into its graph at the first step, so a schedule would be frozen at "
            "its first value. Use trainer.elbo=trace or meanfield with annealing, or anneal=none "
            "with jit."
        )
    problem = model.trainer_problem(trainer)
    if problem:
        problems.append(problem + ".")
    return problems


def check_against_data(spec: RunSpec, data: Any) -> None:
    """The checks that need the data set's size or kind, made before the model is built.

    :raises ConfigError: naming the setting and the data set.
    """
    rows = len(data.train_x)
    if len(data.test_x) == 0:
        options = ", ".join(
            f"data.{k} = {v!r}" for k, v in spec.data.model_dump().items() if k != "name"
        )
        raise ConfigError(
            f"data={data.name} has no test rows with {options or 'these settings'}: the "
            "evaluation needs at least one; hold out a larger part (data.test_fraction, data.folds)."
        )
    if spec.trainer.batch_size is not None and spec.trainer.batch_size > rows:
        raise ConfigError(
            f"trainer.batch_size = {spec.trainer.batch_size} is not valid: it exceeds the "
            f"{rows} training rows of data={data.name}; it must be an integer from 1 to {rows}."
        )
    problem = spec.model.data_problem(data)
    if problem:
        raise ConfigError(problem + ".")


def config_hash(cfg: DictConfig | dict, device: str | None = None) -> str:
    """The identity hash of a config: see :meth:`RunSpec.identity_hash`."""
    return validate(cfg).identity_hash(device)


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flat.update(_flat(value, full))
        else:
            flat[full] = value
    return flat


# how this command treats the folder, not how the run was made
COMMAND_ONLY = ("resume", "overwrite")


def _keyed(values: dict[str, dict]) -> dict[str, Any]:
    """Flat ``section.key`` names as a user writes them (the top-level keys bare, without
    :data:`COMMAND_ONLY`)."""
    run = {k: v for k, v in values.get("run", {}).items() if k not in COMMAND_ONLY}
    rest = {k: v for k, v in values.items() if k != "run"}
    return {**run, **_flat(rest)}


@dataclass(frozen=True)
class RunComparison:
    """How a resumed run's config differs from the one its folder was made with."""

    #: ``key: (old, new)`` of settings that change the trained parameters: no resume
    blocking: dict[str, tuple[Any, Any]]
    #: ``key: (old, new)`` of evaluation, figure and display settings: allowed, recorded
    allowed: dict[str, tuple[Any, Any]]


def compare_runs(saved: DictConfig | dict, new: DictConfig | dict) -> RunComparison:
    """Compares the config a run folder was made with (its ``config.yaml``) with a new one.

    :raises ConfigError: if the new config is not valid; a saved config that no longer
        validates (an older zoo) is compared key by key as it stands.
    """
    new_spec = validate(new)
    try:
        old_spec = validate(saved)
        old_all, old_train = _keyed(old_spec.values()), _keyed(old_spec.training_values())
    except ConfigError:
        old_all = old_train = _keyed(_split_top(_resolved(saved)))
    new_all, new_train = _keyed(new_spec.values()), _keyed(new_spec.training_values())
    blocking = {
        k: (old_train.get(k), new_train.get(k))
        for k in sorted(set(old_train) | set(new_train))
        if old_train.get(k) != new_train.get(k)
    }
    # another model, data set or optimizer: that alone says it, not each of its settings
    for section, (selector, _) in CHOSEN_BY.items():
        if f"{section}.{selector}" in blocking:
            blocking = {
                k: v
                for k, v in blocking.items()
                if not k.startswith(f"{section}.") or k == f"{section}.{selector}"
            }
    allowed = {
        k: (old_all.get(k), new_all.get(k))
        for k in sorted(set(old_all) | set(new_all))
        if old_all.get(k) != new_all.get(k) and k not in blocking and k not in new_train
    }
    return RunComparison(blocking, allowed)


def _split_top(values: dict) -> dict[str, dict]:
    return {"run": {k: v for k, v in values.items() if k not in SECTIONS}} | {
        k: v for k, v in values.items() if k in SECTIONS
    }


SAVED_CONFIG_NAME = "config.yaml"  # the resolved config a run writes into its folder


def check_resume(cfg: DictConfig | dict, out_dir: str | os.PathLike) -> RunComparison:
    """Compares a resume's config with the one the run in ``out_dir`` was made with.

    :returns: the comparison; its ``allowed`` changes (evaluation, figures, display) are
        the summary's to record.
    :raises ConfigError: naming each setting, old and new value, that would change the
        trained parameters. Without a saved config, the checkpoint's identity decides.
    """
    saved_path = Path(out_dir) / SAVED_CONFIG_NAME
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=False)
    except (OSError, OmegaConfBaseException, ValueError):
        return RunComparison({}, {})
    if not isinstance(saved, dict):
        return RunComparison({}, {})
    comparison = compare_runs(saved, cfg)
    if comparison.blocking:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in comparison.blocking.items())
        raise ConfigError(
            f"resume = true is not valid here: the run in {out_dir} was made with other settings "
            f"that change the trained parameters ({lines}). Resume with the settings it was made "
            "with (its config.yaml), or start a fresh run in another folder (hydra.run.dir=...). "
            "Evaluation, figure and display settings may change on resume."
        )
    return comparison
