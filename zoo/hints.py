"""What ``python -m zoo`` adds after Hydra refuses a key: the keys that would be valid.

Hydra lists the valid options of a config group (``model=vea``) but, for a key that is not
in the config (``model.latnt_dim=10``), says only ``Key 'latnt_dim' is not in struct``. This
module composes the config again with the command's group choices and names, for each
unknown key, the keys that exist at that level and the closest match. It runs only after a
failed start, so a good command never pays for the second composition.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _first_value(override) -> str:
    if override.is_sweep_override():
        return next(iter(override.sweep_string_iterator()))
    return override.get_value_element_as_str()


def _split(overrides: Sequence[str], config_dir: Path) -> tuple[list[str], list[str]] | None:
    """The command's group choices (one value of each sweep) and the dotted keys it sets."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # a malformed override: Hydra's own message already says what is wrong
        return None
    choices, keys = [], []
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_delete() or key.split("/")[0].split(".")[0] == "hydra":
            continue
        if (config_dir / key).is_dir():
            choices.append(f"{key}={_first_value(o)}")
        else:
            keys.append(key)
    return choices, keys


def _compose(config_dir: Path, choices: list[str]) -> DictConfig | None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            return compose("config", overrides=choices)
    except Exception:  # a bad group choice: Hydra has already listed the valid options
        return None
    finally:
        GlobalHydra.instance().clear()


def _hint(cfg: DictConfig, key: str) -> str | None:
    """None when ``key`` exists; otherwise what exists at the level where it stops existing."""
    node, path = cfg, []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None  # a key below a value: Hydra's message is already the clear one
        if part not in node:
            parent = ".".join(path)
            valid = sorted(str(k) for k in node.keys())
            close = difflib.get_close_matches(part, valid, n=1)
            guess = f" (did you mean '{'.'.join([*path, close[0]])}'?)" if close else ""
            where = f"the keys of '{parent}'" if parent else "the top-level keys"
            return f"unknown key '{key}'{guess}; {where} are: {', '.join(valid)}"
        node = OmegaConf.select(node, part, throw_on_missing=False)
        path.append(part)
    return None


def unknown_key_hints(overrides: Sequence[str], config_dir: str | Path) -> list[str]:
    """One line per key in ``overrides`` that the composed config does not have.

    :param overrides: the command line's overrides, as given to ``python -m zoo``.
    :param config_dir: the folder of ``config.yaml``.

    >>> from zoo.__main__ import config_dir
    >>> unknown_key_hints(["model=vae", "model.latnt_dim=3"], config_dir())[0][:60]
    "unknown key 'model.latnt_dim' (did you mean 'model.latent_dim"
    """
    config_dir = Path(config_dir)
    split = _split(overrides, config_dir)
    if split is None:
        return []
    choices, keys = split
    if not keys:
        return []
    cfg = _compose(config_dir, choices)
    if cfg is None:
        return []
    return [hint for hint in (_hint(cfg, key) for key in keys) if hint]
