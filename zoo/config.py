"""Checks of a composed config, run before anything is built.

Each rule names a key and says what would be valid, so a wrong value stops the run with a
one-paragraph :class:`~zoo.errors.ConfigError` instead of a traceback from deep inside
torch. Hydra itself refuses unknown config group options and keys that are not in the
config (:mod:`zoo.hints` then names the valid keys); these rules cover the values, and
:mod:`zoo.rundir` the output folder, which Hydra creates before any of our code runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError

Check = Callable[[Any], bool]


def positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def non_negative_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def positive_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def non_negative_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def unit_interval(v: Any) -> bool:
    return non_negative_number(v) and v <= 1


def one_of(*options: Any) -> Check:
    return lambda v: v in options


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def positive_ints(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str) and all(map(positive_int, v))


def adam_betas(v: Any) -> bool:
    return (
        isinstance(v, Sequence) and len(v) == 2 and all(non_negative_number(b) and b < 1 for b in v)
    )


# key -> (check, what would be valid). Keys missing from a config are skipped: a schedule
# without a warm-up has no warmup_epochs.
RULES: dict[str, tuple[Check, str]] = {
    "seed": (non_negative_int, "an integer >= 0"),
    "device": (one_of("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    "threads": (
        lambda v: v is None or positive_int(v),
        "an integer >= 1, or null for torch's default",
    ),
    "resume": (boolean, "true or false"),
    "trainer.epochs": (positive_int, "an integer >= 1"),
    "trainer.batch_size": (positive_int, "an integer >= 1, at most the number of training rows"),
    "trainer.elbo": (
        one_of("trace", "meanfield", "jit", "traceenum"),
        "trace (Trace_ELBO), meanfield (TraceMeanField_ELBO), jit (JitTrace_ELBO) or "
        "traceenum (TraceEnum_ELBO)",
    ),
    "trainer.sampling": (
        one_of("permutation", "replacement"),
        "permutation (each row once an epoch) or replacement (independent minibatches)",
    ),
    "trainer.num_particles": (positive_int, "an integer >= 1"),
    "trainer.eval_every": (positive_int, "an integer >= 1 (epochs)"),
    "trainer.eval_seed": (non_negative_int, "an integer >= 0"),
    "trainer.validate": (boolean, "true or false"),
    "trainer.progress": (boolean, "true or false"),
    "trainer.skip_nonfinite": (non_negative_int, "an integer >= 0 (0: stop at the first)"),
    "optim.optim_args.lr": (positive_number, "a finite number > 0"),
    "optim.optim_args.betas": (adam_betas, "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    "optim.optim_args.clip_norm": (positive_number, "a finite number > 0"),
    "optim.optim_args.lrd": (lambda v: positive_number(v) and v <= 1, "a number in (0, 1]"),
    "optim.optim_args.weight_decay": (non_negative_number, "a finite number >= 0"),
    "optim.clip_args.clip_norm": (positive_number, "a finite number > 0"),
    "optim.implementation": (
        one_of("fused", "foreach", "single_tensor", "per_parameter"),
        "fused, foreach or single_tensor (one torch.optim.Adam over all parameters) or "
        "per_parameter (pyro.optim.Adam)",
    ),
    "anneal.name": (
        one_of("none", "constant", "linear", "sigmoid", "cyclical", "blundell"),
        "none, constant, linear, sigmoid, cyclical or blundell",
    ),
    "anneal.per": (one_of("step", "epoch"), "step or epoch"),
    "anneal.value": (non_negative_number, "a finite number >= 0"),
    "anneal.beta_min": (unit_interval, "a number in [0, 1]"),
    "anneal.warmup_epochs": (non_negative_number, "a number of epochs >= 0"),
    "anneal.steepness": (positive_number, "a finite number > 0"),
    "anneal.total_epochs": (positive_number, "a number of epochs > 0"),
    "anneal.cycles": (positive_int, "an integer >= 1"),
    "anneal.ramp": (lambda v: positive_number(v) and v <= 1, "a number in (0, 1]"),
    # settings that several models share; a model without the key skips the rule
    "model.latent_dim": (positive_int, "an integer >= 1"),
    "model.hidden_dims": (positive_ints, "a list of integers >= 1, e.g. [128] or [] for none"),
    "model.evaluation.iw_samples": (non_negative_int, "an integer >= 0 (0: no IW estimate)"),
    "model.evaluation.batch_size": (positive_int, "an integer >= 1"),
    "model.periodic_evaluation.iw_samples": (non_negative_int, "an integer >= 0"),
}


def _lookup(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_config(cfg: DictConfig) -> None:
    """Raises :class:`ConfigError` for the first value that breaks a rule."""
    for key, (check, valid) in RULES.items():
        present, value = _lookup(cfg, key)
        if present and not check(value):
            raise ConfigError(f"{key} = {value!r} is not valid: it must be {valid}.")
    anneal = cfg.get("anneal", {}).get("name")
    if cfg.get("trainer", {}).get("elbo") == "jit" and anneal not in (None, "none", "constant"):
        raise ConfigError(
            f"trainer.elbo = 'jit' is not valid with anneal={anneal}: JitTrace_ELBO compiles "
            "beta into its graph at the first step, so a schedule would be frozen at its first "
            "value. Use trainer.elbo=trace or meanfield with annealing, or anneal=none with jit."
        )
    root = cfg.get("data", {}).get("root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(
            f"data.root = {root!r} is not valid: it must be an existing folder that holds the "
            "data files, or null to look in the cache and system folders."
        )


def config_hash(cfg: DictConfig) -> str:
    """A short hash of the settings that change the numbers (not ``resume`` or progress bars)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("resume", None)
    values.get("trainer", {}).pop("progress", None)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
