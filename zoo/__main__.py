"""``python -m zoo``: compose the Hydra config, run it, print the summary.

A :class:`~zoo.errors.ZooError` is printed as one paragraph and the process exits with its
code, without a traceback unless ``HYDRA_FULL_ERROR=1``. SIGINT and SIGTERM stop the run
with a message and status 130 or 143; during training the trainer itself handles them (see
:mod:`zoo.train`), so the checkpoint of the last completed epoch is always whole.

Under ``torchrun`` every rank runs this entry point with the same overrides
(:mod:`zoo.distributed`). Rank 0's run folder is the run's; the other ranks get a temporary
Hydra folder of their own, deleted at exit, with no ``.hydra/`` and no log file, and print
nothing but their errors.
"""

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def config_dir() -> str:
    """The configs: ``zoo/conf`` inside an installed wheel, ``conf/`` beside the package in a
    checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise SystemExit(
        f"zoo: no Hydra configs found in {package / 'conf'} or {package.parent / 'conf'}"
    )


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Runs the experiment; returns the summary's ``objective`` metric if one is set (what a
    sweeper such as Optuna's optimizes), else None."""
    # a log file on a full disk must not print logging's own traceback: the run's error
    # message says what could not be written
    logging.raiseExceptions = False
    from zoo.app import format_summary, run  # imported here so that --help stays fast
    from zoo.errors import Interrupted, ZooError

    out_dir = HydraConfig.get().runtime.output_dir

    def interrupt(signum, frame):
        # resume is offered only where there is something to resume from
        if (Path(out_dir) / "checkpoint.pt").is_file():
            next_step = (
                f"its checkpoint in {out_dir} is whole: continue with the same overrides plus "
                f"resume=true hydra.run.dir={out_dir}"
            )
        else:
            next_step = f"no epoch was complete, so there is nothing to resume in {out_dir}"
        raise Interrupted(
            f"interrupted by {signal.Signals(signum).name} outside training; {next_step}.", signum
        )

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run(cfg, out_dir)
    except ZooError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"zoo: {e}" if isinstance(e, Interrupted) else f"zoo: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if "rank" in summary:  # a rank other than 0: rank 0 prints the run's summary
        return None
    print(format_summary(summary))
    return objective_of(summary, cfg.get("objective"))


def objective_of(summary: dict, objective: str | None) -> float | None:
    """The summary's metric ``objective`` (None: no objective); a name the run does not
    report ends the process with the metrics it does report."""
    if objective is None:
        return None
    metrics = summary["metrics"]
    if objective not in metrics:
        print(
            f"zoo: error: objective = {objective!r} is not a metric of this run; its metrics "
            f"are {', '.join(metrics)}.",
            file=sys.stderr,
        )
        sys.exit(2)
    return float(metrics[objective])


def _refuse_bad_overrides(overrides: list[str]) -> None:
    """Group options that are paths, and a sweep with bad jobs, stop before Hydra starts."""
    from zoo.overrides import group_option_problems, sweep_problems

    problems = group_option_problems(overrides, config_dir())
    if not problems and ("-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]):
        problems = sweep_problems(overrides, config_dir())
    if problems:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            from zoo.errors import ConfigError

            raise ConfigError(" ".join(problems))
        print(f"zoo: error: {' '.join(problems)}", file=sys.stderr)
        sys.exit(2)  # ConfigError's status


def _as_a_rank_beside_rank_0() -> None:
    """Under torchrun, for ranks other than 0: Hydra's folder is a temporary one (rank 0's
    folder is the run's, and a second writer of its ``.hydra/`` would race with it), and only
    warnings are logged; a sweep is refused on every rank, naming the way that works."""
    if "WORLD_SIZE" not in os.environ:  # not under torchrun: --help stays free of torch
        return
    from zoo.distributed import ranks_from_environment
    from zoo.errors import ZooError

    try:
        ranks = ranks_from_environment()
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if ranks is None:
        return
    if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]:
        print(
            f"zoo: error: a sweep (-m) cannot run under torchrun ({ranks}): start one "
            "torchrun per job, e.g. from a Slurm array (docs: launchers).",
            file=sys.stderr,
        )
        sys.exit(2)
    if ranks.is_main:
        return
    import atexit
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix=f"zoo-rank{ranks.rank}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    # in place of the user's settings of the same keys (Hydra refuses a group given twice)
    ours = ("hydra.run.dir=", "hydra.output_subdir=", "hydra/job_logging=", "hydra/hydra_logging=")
    sys.argv[1:] = [a for a in sys.argv[1:] if not a.lstrip("+~").startswith(ours)]
    sys.argv += [
        f"hydra.run.dir={scratch}",
        "hydra.output_subdir=null",
        "hydra/job_logging=disabled",
        "hydra/hydra_logging=disabled",
    ]


def cli() -> None:
    """``main`` after the checks of :mod:`zoo.overrides`, plus, when Hydra refuses a key that
    is not in the config, the valid keys."""
    overrides = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    _refuse_bad_overrides(overrides)
    _as_a_rank_beside_rank_0()
    try:
        main()
    except SystemExit as e:
        if e.code == 1:  # Hydra's status for a config it could not compose
            from zoo.hints import unknown_key_hints

            for hint in unknown_key_hints(overrides, config_dir()):
                print(f"zoo: {hint}", file=sys.stderr)
        raise


if __name__ == "__main__":
    cli()
