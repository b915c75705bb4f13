"""Checks of the command line's overrides, made before Hydra runs anything.

- A config group option names a file of that group, nothing else: ``experiment=../../x``
  would make Hydra load any YAML file on disk as an experiment.
- A sweep (``-m``) is checked job by job before its first job starts: every job's config is
  composed and validated (:func:`zoo.config.validate`), and the sweep is refused with all of
  its bad jobs named, instead of failing at the first bad job after the others have run.

Hydra's own parser and its basic sweeper's expansion are used, so a job here is the job
Hydra would run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo.errors import ConfigError


def _parse(overrides: Sequence[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # malformed: Hydra says what is wrong when it parses them itself
        return None


def _is_group(key: str, config_dir: Path) -> bool:
    return (config_dir / key).is_dir()


def group_option_problems(overrides: Sequence[str], config_dir: str | Path) -> list[str]:
    """Overrides of a config group whose option is a path rather than a name."""
    config_dir = Path(config_dir)
    parsed = _parse(overrides) or []
    problems = []
    for override in parsed:
        key = override.key_or_group
        if not _is_group(key, config_dir) or override.is_delete():
            continue
        values = (
            list(override.sweep_string_iterator())
            if override.is_discrete_sweep()
            else [override.get_value_element_as_str()]
        )
        for value in values:
            if "/" in value or "\\" in value or value.startswith("."):
                options = sorted(p.stem for p in (config_dir / key).glob("*.yaml"))
                problems.append(
                    f"{key} = {value!r} is not valid: a config group option is the name of a "
                    f"file in the group, not a path; valid: {', '.join(options)}."
                )
    return problems


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]] | None:
    """The override list of each job of a basic sweep, in Hydra's order (None if the
    overrides do not parse or use a sweep the basic sweeper does not expand)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = _parse(overrides)
    if parsed is None:
        return None
    try:
        (jobs,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception:  # e.g. an interval sweep, which needs another sweeper: Hydra says so
        return None
    return jobs


def sweep_problems(overrides: Sequence[str], config_dir: str | Path) -> list[str]:
    """For each job of the sweep whose config is not valid: the job and why."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from zoo.config import validate

    jobs = sweep_jobs(overrides)
    if not jobs or len(jobs) == 1:  # one job: checked when it starts, as a single run is
        return []
    swept = {o.key_or_group for o in _parse(overrides) if o.is_sweep_override()}
    problems = []
    for number, job in enumerate(jobs):
        # Hydra's own settings (launcher, sweep folder) are Hydra's to check
        ours = [o for o in job if not o.lstrip("+~").startswith("hydra")]
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
                validate(compose(config_name="config", overrides=ours))
        except ConfigError as e:
            label = " ".join(o for o in job if o.split("=")[0].lstrip("+~") in swept)
            problems.append(f"job {number} ({label}): {e}")
        except Exception:  # a composition error: Hydra reports it when it composes the job
            continue
        finally:
            GlobalHydra.instance().clear()
    if problems:
        problems.insert(
            0,
            f"the sweep was not started: {len(problems)} of its {len(jobs)} jobs have settings "
            "that are not valid;",
        )
    return problems
