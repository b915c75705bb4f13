"""Typed settings: the base class every component's settings derive from.

Each component declares its settings as a :class:`Settings` subclass beside the code that
uses them (``TrainSettings`` in :mod:`zoo.train`, ``VAE.Settings`` in :mod:`zoo.models.vae`,
one per data set, schedule and optimizer), so that a reader sees every setting, its type, its
range and what it means in one place, and a new setting cannot be added unchecked:
:mod:`zoo.config` validates a whole config against them before anything is built.

Pydantic rather than Hydra's structured configs: OmegaConf types values but cannot express
ranges (``lr > 0``, a finite float), choices that depend on a registry (a data set name) or
a list of exactly two numbers, and its errors are tracebacks; pydantic does all of these and
reports every failure with its location, which :func:`describe_errors` turns into the zoo's
one-paragraph messages.

Every field is declared with :func:`setting`, which records what a valid value is (the text
of the error message) and whether the value can change the trained parameters
(``trains=False`` for evaluation, figure and display settings): a resumed run may change those,
and the checkpoint's identity hash leaves them out.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo


class Settings(BaseModel):
    """Strict, closed and frozen: ``"3"`` is not an integer, ``1.5`` not an int, ``"maybe"`` not
    a bool, NaN and infinity are not numbers, an unknown key is an error, and validated
    settings cannot drift afterwards. Built in Python, ``TrainSettings(epochs=0)`` raises
    pydantic's ``ValidationError`` (a ``ValueError``); :mod:`zoo.config` words it for a config."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        allow_inf_nan=False,
    )


class SettingError(ValueError):
    """Raised by a settings class's own cross-field check: ``key`` (relative to the class)
    names the setting at fault, the message says what would be valid."""

    def __init__(self, key: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.key, self.value = key, value


def setting(default: Any = ..., valid: str = "", *, trains: bool = True, **constraints: Any) -> Any:
    """A field of a :class:`Settings` class.

    :param default: the default value (``...``: required).
    :param valid: what a valid value is, as the end of "it must be ...", e.g. "an integer >= 1".
    :param trains: whether the value can change the trained parameters; ``False`` for
        settings read only by evaluation, figures or the terminal.
    :param constraints: pydantic's constraints (``gt``, ``ge``, ``le``, ``min_length``, ...).
        Floats are finite (the class's ``allow_inf_nan=False``).
    """
    return Field(default, description=valid, json_schema_extra={"trains": trains}, **constraints)


def field_trains(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return not isinstance(extra, dict) or extra.get("trains", True) is not False


def _field(cls: type[BaseModel] | None, name: Any) -> tuple[FieldInfo | None, type | None]:
    """The field ``name`` of ``cls`` (by name or alias) and its class if it is settings too."""
    if cls is None or not isinstance(name, str):
        return None, None
    for field_name, info in cls.model_fields.items():
        if name in (field_name, info.alias):
            # a settings class, or an optional one (ClipArguments | None)
            for sub in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    return info, sub
            return info, None
    return None, None


def _key(prefix: str, loc: list) -> str:
    """``model.hidden_dims[1]`` from the prefix and pydantic's location."""
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _keys(cls: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in cls.model_fields.items()]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_errors(error: ValidationError, cls: type[BaseModel], prefix: str) -> list[str]:
    """One sentence per failure: the full key, the value, and what would be valid."""
    sentences = []
    for item in error.errors():
        loc = list(item["loc"])
        owner: type[BaseModel] | None = cls
        info = None
        parent = None
        for part in loc[:-1]:
            if isinstance(part, int):  # an item of a list: its field describes it
                break
            parent, owner = _field(owner, part)
        leaf = loc[-1] if loc else None
        key = _key(prefix, loc)
        if item["type"] == "extra_forbidden":
            valid = _keys(owner) if owner is not None else []
            close = difflib.get_close_matches(str(leaf), valid, n=1)
            hint = f" (did you mean {key.rsplit('.', 1)[0]}.{close[0]}?)" if close else ""
            sentences.append(f"{key} is not a setting{hint}; valid: {', '.join(valid)}.")
            continue
        info = _field(owner, leaf)[0] if not isinstance(leaf, int) else None
        info = info or parent
        valid = info.description if info is not None and info.description else None
        if item["type"] == "missing":
            sentences.append(f"{key} is missing: it must be set to {valid or 'a value'}.")
        elif isinstance(item.get("ctx", {}).get("error"), SettingError):
            fault = item["ctx"]["error"]
            at = _key(prefix, [*loc, fault.key])
            sentences.append(f"{at} = {_shown(fault.value)} is not valid: {fault}.")
        elif item["type"] == "value_error" and "error" in item.get("ctx", {}):
            sentences.append(f"{key} = {_shown(item['input'])} is not valid: {item['ctx']['error']}.")
        else:
            reason = f"it must be {valid}" if valid else item["msg"].lower()
            sentences.append(f"{key} = {_shown(item['input'])} is not valid: {reason}.")
    return sentences


def trains_only(cls: type[BaseModel], values: dict) -> dict:
    """``values`` (a dump of ``cls``) without the fields marked ``trains=False``, recursively."""
    kept = {}
    for name, info in cls.model_fields.items():
        key = info.alias or name
        if key not in values or not field_trains(info):
            continue
        _, sub = _field(cls, key)
        value = values[key]
        kept[key] = trains_only(sub, value) if sub is not None and isinstance(value, dict) else value
    return kept
