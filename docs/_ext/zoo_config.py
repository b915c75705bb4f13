"""The config reference, generated at build time from the settings classes and conf/.

At ``builder-inited`` it writes ``docs/_generated/config.md`` (ignored by git), which
``reference/config.md`` includes (one heading level down): one table per option of each config group:
every key the option's settings class declares (nested settings flattened to dotted keys),
its type, its default (the option file's value where the file sets one, else the class's),
what a valid value is (the text of the zoo's own error message), whether it can change the
trained parameters (a resume may change only those that cannot), and what it means (the
comment beside the key in the option file, or above the field in the settings class).
Then each preset of ``conf/experiment`` with what it sets.

A key that an option file sets but its settings class does not declare is logged as a
warning, so ``sphinx-build -W`` fails when conf/ and the schemas drift apart.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import typing
from pathlib import Path

from omegaconf import OmegaConf
from pydantic import BaseModel
from sphinx.util import logging

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[2] / "conf"
KEY_LINE = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][\w]*)\s*:(.*)$")


# --- comments -------------------------------------------------------------------------------


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """The file's opening comment and, per dotted key, the comment beside it or the comment
    lines just above it. The option files are plain nested mappings, so indentation gives the
    path; a ``# @package`` line is Hydra's, not prose."""
    header, comments, stack, above = [], {}, [], []
    seen_key = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("@package"):
                continue
            (above if seen_key else header).append(text)
            continue
        match = KEY_LINE.match(line)
        if not match or match.group(2):  # not a key, or an item of a list (the defaults)
            above = []
            continue
        seen_key = True
        indent, key, rest = len(match.group(1)), match.group(3), match.group(4)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        beside = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        text = " ".join([*above, beside]).strip()
        if text:
            comments[dotted] = text
        above = []
    return " ".join(header), comments


def source_comments(cls: type) -> dict[str, str]:
    """Per field of ``cls`` and its settings bases, the comment lines just above the field
    in the class's source (``#:`` doc comments included)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            lines, start = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        tree = ast.parse(textwrap.dedent("".join(lines)))
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for statement in body:
            if not isinstance(statement, ast.AnnAssign) or not isinstance(
                statement.target, ast.Name
            ):
                continue
            above, row = [], statement.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#:").strip())
                row -= 1
            if above:
                comments[statement.target.id] = " ".join(above)
    return comments


# --- the keys of a settings class -----------------------------------------------------------


def settings_class(annotation) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(repr(a) if isinstance(a, str) else str(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, dict, tuple):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "settings"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def rows(cls: type[BaseModel], prefix: str = "", trains: bool = True) -> list[dict]:
    """One row per key of ``cls``, nested settings as dotted keys below their parent."""
    comments = source_comments(cls)
    out = []
    for name, info in cls.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        trains_here = trains and extra.get("trains", True) is not False
        sub = settings_class(info.annotation)
        default = None if info.is_required() else info.get_default()
        if isinstance(default, BaseModel):
            default = default.model_dump(by_alias=True)
        out.append(
            {
                "key": key,
                "type": type_name(info.annotation),
                "default": default,
                "required": info.is_required(),
                "valid": info.description or "",
                "trains": trains_here,
                "meaning": comments.get(name, ""),
            }
        )
        if sub is not None:
            out += rows(sub, f"{key}.", trains_here)
    return out


def flat(values, prefix: str = "") -> dict:
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


PARAM = re.compile(r"^\s*:param\s+(?:[\w\[\], |.]+\s+)?(\w+):\s*(.*(?:\n(?!\s*:)\s+\S.*)*)", re.M)
PARENTHETICAL = re.compile(r"\(([^()]*)\)$")


def param_docs(function) -> dict[str, str]:
    """The ``:param name: text`` entries of a function's docstring."""
    doc = inspect.getdoc(function) or ""
    return {m.group(1): " ".join(m.group(2).split()) for m in PARAM.finditer(doc)}


def builder_docs(group: str, settings_cls: type) -> dict[str, str]:
    """The parameters documented by the function a group's settings are passed to: a
    model's ``build``, a data set's loader."""
    from zoo.data import DATASETS
    from zoo.models import MODELS

    field = settings_cls.model_fields.get("name")
    name = field.default if field is not None else None
    if group == "model" and name in MODELS:
        return param_docs(MODELS[name].build)
    if group == "data" and name in DATASETS:
        return param_docs(DATASETS[name])
    return {}


def implied(row: dict, group: str) -> str:
    """A meaning for a key with no comment: the option's name, or the parenthetical at the end
    of its valid-values text ("an integer >= 1 (steps averaged per window)")."""
    if row["key"] == "name":
        return f"which {group} option this is; set by the option file"
    found = PARENTHETICAL.search(row["valid"])
    return found.group(1) if found else ""


# --- the groups -----------------------------------------------------------------------------


def groups() -> list[tuple[str, str, list[tuple[str, Path, type[BaseModel], dict]]]]:
    """(group, what it is, [(option, file, settings class, values the file sets)])."""
    from zoo.config import CHOSEN_BY, RunSettings
    from zoo.train import TrainSettings

    def options(group: str):
        found = []
        for path in sorted((CONF / group).glob("*.yaml")):
            values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            values.pop("defaults", None)
            own = values.pop(group, None) if "model" in values and group == "model" else values
            if group == "trainer":
                cls = TrainSettings
            else:
                choice, classes = CHOSEN_BY[group]
                cls = classes[own[choice]]
            found.append((path.stem, path, cls, own, values if own is not values else {}))
        return found

    top = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"), resolve=False)
    top = {k: v for k, v in top.items() if k in RunSettings.model_fields}
    return [
        (
            "top level",
            "the keys of conf/config.yaml itself",
            [("config", CONF / "config.yaml", RunSettings, top, {})],
        ),
        ("trainer", "how to train (zoo.train.TrainSettings)", options("trainer")),
        ("model", "the model and its guide (zoo.models)", options("model")),
        ("data", "the data set (zoo.data)", options("data")),
        ("optim", "the optimizer (zoo.optim)", options("optim")),
        ("anneal", "the KL-annealing schedule (zoo.schedules)", options("anneal")),
        ("logger", "the experiment tracker (zoo.loggers)", options("logger")),
    ]


# --- rendering ------------------------------------------------------------------------------

SPECIAL = re.compile(r"([\\`*_|\[\]<>#])")
OUT = Path(__file__).resolve().parents[1] / "_generated" / "config.md"


def text(value: str) -> str:
    """Prose for a Markdown table cell, with Markdown's markup characters escaped."""
    return SPECIAL.sub(r"\\\1", " ".join(value.split())) if value else ""


def literal(value) -> str:
    shown = OmegaConf.to_yaml({"v": value}).strip()[3:] if value is not None else "null"
    shown = " ".join(shown.split()).replace("|", "\\|")
    return f"`{shown}`" if shown else "`''`"


def table(
    option_rows: list[dict], set_here: dict, file_comments: dict, prefix: str, group: str
) -> list[str]:
    out = [
        "| key | type | default | valid values | trains | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in option_rows:
        local = row["key"]
        if local in set_here:
            default = literal(set_here[local])
        elif row["required"]:
            default = "required"
        elif row["type"].startswith("settings"):
            default = "the keys below"
        else:
            default = literal(row["default"])
        meaning = file_comments.get(local) or row["meaning"] or implied(row, group)
        cells = [
            f"`{prefix}{local}`",
            text(row["type"]),
            default,
            text(row["valid"]),
            "yes" if row["trains"] else "no",
            text(meaning),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def config_reference() -> list[str]:
    lines: list[str] = []
    for group, what, option_list in groups():
        prefix = "" if group == "top level" else f"{group}."
        title = "Top-level keys" if group == "top level" else f"The `{group}` group"
        lines += [f"# {title}", "", f"{text(what[0].upper() + what[1:])}.", ""]
        for option, path, cls, own, other in option_list:
            header, comments = yaml_comments(path)
            if any(k.startswith("model.") for k in comments):
                # a @package _global_ model file: its own keys are model.*
                comments = {k[6:]: v for k, v in comments.items() if k.startswith("model.")}
            option_rows = rows(cls)
            params = builder_docs(group, cls)
            for row in option_rows:
                row["meaning"] = row["meaning"] or params.get(row["key"], "")
            known = {row["key"] for row in option_rows}
            set_here = flat(own)
            if "periodic_evaluation" in own:  # a mapping of overrides: one value
                set_here = {k: v for k, v in set_here.items() if not k.startswith("periodic_")}
                set_here["periodic_evaluation"] = own["periodic_evaluation"]
            for key in set_here:
                if key not in known:
                    log.warning(f"{path.name}: {key} is not a key of {cls.__qualname__}")
            rel = path.relative_to(CONF.parent)
            if group != "top level":
                lines += [f"## `{group}={option}`", ""]
            lines += [
                f"File `{rel}`, settings class `{cls.__module__}.{cls.__qualname__}`."
                + (f" {text(header)}" if header else ""),
                "",
            ]
            lines += table(option_rows, set_here, comments, prefix, group)
            if other:
                sets = ", ".join(f"`{k}={literal(v)[1:-1]}`" for k, v in flat(other).items())
                lines += [f"This option also sets {sets}.", ""]
    return lines


def experiment_presets() -> list[str]:
    lines = ["# Experiment presets", "", "Each file of `conf/experiment` and what it sets.", ""]
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        header, _ = yaml_comments(path)
        values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        defaults = values.pop("defaults", [])
        picks = [
            f"`{next(iter(d)).replace('override /', '')}={next(iter(d.values()))}`"
            for d in defaults
            if isinstance(d, dict)
        ]
        sets = [f"`{k}={literal(v)[1:-1]}`" for k, v in flat(values).items()]
        lines += [f"## `experiment={path.stem}`", "", text(header) or "(no comment)", ""]
        if picks:
            lines += ["Options: " + ", ".join(picks) + ".", ""]
        if sets:
            lines += ["Values: " + ", ".join(sets) + ".", ""]
    return lines


def write(app=None) -> Path:
    """Writes the reference; returns its path."""
    OUT.parent.mkdir(exist_ok=True)
    body = "\n".join(config_reference() + experiment_presets())
    if not OUT.exists() or OUT.read_text() != body:  # an unchanged file keeps Sphinx's cache
        OUT.write_text(body)
    return OUT


def setup(app):
    app.connect("builder-inited", write)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
