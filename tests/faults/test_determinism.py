"""The same seed and config give the same numbers twice on the CPU, and the summary records
what is needed to repeat a run: seed, versions, config and its hash."""

import json

import pyro
import torch
from faultkit import TINY, compose_config, numbers

from zoo.app import run
from zoo.config import config_hash


def test_the_same_seed_and_config_give_the_same_numbers_twice(model_args, finished_run, tmp_path):
    pyro.clear_param_store()
    run(compose_config([*model_args, *TINY]), tmp_path)
    assert numbers(tmp_path) == numbers(finished_run)


def test_the_summary_records_seed_versions_config_and_hash(model_args, finished_run):
    cfg = compose_config([*model_args, *TINY])
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["seed"] == cfg.seed == 0
    assert summary["config_hash"] == config_hash(cfg, "cpu") and len(summary["config_hash"]) == 12
    assert summary["config"]["trainer"]["epochs"] == cfg.trainer.epochs
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["versions"]["pyro"] == pyro.__version__
    assert {"python", "hydra"} <= set(summary["versions"])
