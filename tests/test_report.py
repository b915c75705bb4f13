"""The report: tables from summaries, refusals, and the committed tables are up to date."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zoo_subprocess import zoo_env

from zoo.report import ReportError, build, main

REPO_RESULTS = Path(__file__).resolve().parents[1] / "results"

SPEC = {
    "toy": {
        "title": "Toy",
        "seeds": [0, 1, 2],
        "columns": {
            "test/elbo": {"label": "test ELBO"},
            "test/kl": {"label": "KL", "format": ".1f"},
        },
        "rows": [{"id": "a", "label": "row a", "overrides": ["model=vae", "trainer.epochs=3"]}],
        "references": ["Somebody 2020: -1.00"],
    }
}


def write_run(results, seed, elbo, *, epochs=3, row="a", stop=None):
    folder = results / "runs" / "toy" / row / f"seed={seed}"
    folder.mkdir(parents=True)
    trainer = {"epochs": epochs, "progress": seed == 0}
    if stop is not None:
        trainer["stop"] = stop
    summary = {
        "seed": seed,
        "config": {"seed": seed, "trainer": trainer},
        "metrics": {"test/elbo": elbo, "test/kl": 2.0 + seed},
        "time": {"train_s": 10.0 + seed},
        "machine": {"system": "Linux", "machine": "x86_64", "cpu_count": 2, "gpu": None},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def results(tmp_path):
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(SPEC))
    return tmp_path


def test_table_has_mean_and_sd_over_seeds_command_and_reference(results):
    for seed, elbo in [(0, -10.0), (1, -12.0), (2, -14.0)]:
        write_run(results, seed, elbo)
    files = build(results)
    readme = files["README.md"]
    assert "| row a | -12.00 ± 2.00 | 3.0 ± 1.0 | 3/3 | 11 s |" in readme
    assert (
        "python -m zoo -m model=vae trainer.epochs=3 seed=0,1,2 hydra.sweep.dir=results/runs/toy/a"
        in readme
    )
    assert "Reference: Somebody 2020" in readme and "2 CPU cores, no GPU" in readme
    assert files["toy.csv"].splitlines()[1].startswith("a,3,0 1 2,-12,2,3,1,")


def test_incomplete_seeds_are_marked(results):
    write_run(results, 0, -10.0)
    assert "1/3 **incomplete**" in build(results)["README.md"]


def test_runs_of_different_configs_are_not_mixed_in_one_row(results):
    write_run(results, 0, -10.0)
    write_run(results, 1, -11.0, epochs=4)
    with pytest.raises(ReportError, match="seed 1 was run with another config.*trainer.epochs"):
        build(results)


def test_a_table_is_not_replaced_by_one_with_fewer_runs_unless_forced(results):
    for seed in range(3):
        write_run(results, seed, -10.0 - seed)
    assert main(["--results", str(results)]) == 0
    shutil.rmtree(results / "runs" / "toy" / "a" / "seed=2")
    with pytest.raises(ReportError, match="has 3 runs, only 2 are present"):
        build(results)
    assert main(["--results", str(results)]) == 2
    assert main(["--results", str(results), "--force"]) == 0
    assert "2/3 **incomplete**" in (results / "README.md").read_text()


def test_check_reports_stale_tables(results):
    write_run(results, 0, -10.0)
    assert main(["--results", str(results), "--check"]) == 1
    assert main(["--results", str(results)]) == 0
    assert main(["--results", str(results), "--check"]) == 0


def write_fold_run(results, row, fold, log_lik, *, folds=5):
    folder = results / "runs" / "cv" / row / f"data.fold={fold}"
    folder.mkdir(parents=True)
    summary = {
        "seed": 0,
        "config": {"seed": 0, "data": {"folds": folds, "fold": fold}},
        "metrics": {"test/log_pred": log_lik},
        "time": {"train_s": 1.0, "fit_s": 2.0 + fold},
        "resources": {"peak_rss_mb": 300.0 + fold},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


CV_SPEC = {
    "cv": {
        "title": "Folds",
        "sweep": {"key": "data.fold", "values": [0, 1, 2], "label": "folds"},
        "columns": {
            "test/log_pred": {"label": "log pred", "format": ".1f"},
            "time.fit_s": {"label": "fit s", "format": ".1f"},
            "resources.peak_rss_mb": {"label": "peak MiB", "format": ".0f"},
        },
        "rows": [
            {
                "id": "zoo",
                "label": "zoo",
                "overrides": ["experiment=gmm_old_faithful", "data.folds=5"],
            },
            {
                "id": "em",
                "label": "EM",
                "script": "benchmarks/sklearn_gmm.py --method em",
                "overrides": ["experiment=gmm_old_faithful", "data.folds=5"],
            },
        ],
    }
}


def test_a_table_may_sweep_folds_and_take_rows_from_a_baseline_script(tmp_path):
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(CV_SPEC, sort_keys=False))
    for fold, log_lik in [(0, -4.0), (1, -5.0), (2, -6.0)]:
        write_fold_run(tmp_path, "zoo", fold, log_lik)
    write_fold_run(tmp_path, "em", 0, -4.5)
    readme = build(tmp_path)["README.md"]
    # folds are the runs of a row; dotted columns read the summary outside its metrics
    assert "| zoo | -5.0 ± 1.0 | 3.0 ± 1.0 | 301 ± 1 | 3/3 | 1 s |" in readme
    assert "| EM | -4.5 | 2.0 | 300 | 1/3 **incomplete** | 1 s |" in readme
    assert (
        "python -m zoo -m experiment=gmm_old_faithful data.folds=5 data.fold=0,1,2 "
        "hydra.sweep.dir=results/runs/cv/zoo" in readme
    )
    assert (
        "python benchmarks/sklearn_gmm.py --method em experiment=gmm_old_faithful data.folds=5 "
        "data.fold=0,1,2 --out results/runs/cv/em" in readme
    )
    assert "standard deviation over folds" not in readme  # no machine recorded here


def test_runs_of_one_row_may_differ_only_in_the_swept_key(tmp_path):
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(CV_SPEC, sort_keys=False))
    write_fold_run(tmp_path, "zoo", 0, -4.0)
    write_fold_run(tmp_path, "zoo", 1, -4.0, folds=4)
    with pytest.raises(ReportError, match=r"data.fold 1 was run with another config.*data.folds"):
        build(tmp_path)


def test_committed_tables_are_rebuilt_exactly_from_committed_summaries():
    files = build(REPO_RESULTS)
    for path, text in files.items():
        assert (REPO_RESULTS / path).read_text() == text, (
            f"results/{path} is stale: run python -m zoo.report"
        )


def test_the_sklearn_baseline_writes_summaries_that_the_report_puts_in_a_row(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "runs" / "cv" / "em"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_RESULTS.parent / "benchmarks" / "sklearn_gmm.py"),
            "--method",
            "em",
            "experiment=gmm_old_faithful",
            "data.folds=5",
            "data.fold=0,1,2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=zoo_env(),
    )
    assert done.returncode == 0, done.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
    assert [s["config"]["data"]["fold"] for s in summaries] == [0, 1, 2]
    for s in summaries:
        m = s["metrics"]
        assert -5.0 < m["test/log_pred_plugin"] < -3.5  # nats per point in minutes
        # components in minutes, in the zoo's order: short eruptions first
        assert 1.5 < m["fit/mean_0_eruptions"] < 2.5 < 4.0 < m["fit/mean_1_eruptions"] < 4.6
        assert m["fit/weight_0"] + m["fit/weight_1"] == pytest.approx(1.0)
        assert s["resources"]["peak_rss_mb"] > 0 and s["time"]["fit_s"] > 0
    assert len({s["metrics"]["test/log_pred_plugin"] for s in summaries}) == 3  # other folds

    spec = {"cv": {**CV_SPEC["cv"], "rows": [CV_SPEC["cv"]["rows"][1]]}}
    spec["cv"]["columns"] = {"test/log_pred_plugin": {"label": "log pred", "format": ".3f"}}
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    readme = build(tmp_path)["README.md"]
    assert "| EM | -4." in readme and "| 3/3 |" in readme


def test_a_chart_draws_the_listed_columns_against_the_rows_x(tmp_path):
    spec = json.loads(json.dumps(CV_SPEC))
    spec["cv"]["chart"] = {
        "columns": ["time.fit_s", "resources.peak_rss_mb"],
        "x_label": "N",
        "path": "figures/cv/scaling.png",
        "caption": "time and memory against N",
    }
    spec["cv"]["rows"][0]["chart"] = {"x": "1e5", "series": "zoo"}
    spec["cv"]["rows"][1]["chart"] = {"x": "1e6", "series": "zoo"}
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for row in ("zoo", "em"):
        for fold in range(3):
            write_fold_run(tmp_path, row, fold, -4.0)
    assert main(["--results", str(tmp_path)]) == 0
    png = tmp_path / "figures" / "cv" / "scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert (
        "![time and memory against N](figures/cv/scaling.png)"
        in (tmp_path / "README.md").read_text()
    )


# trainer.stop came with issue 17: a row's later seeds record it, its earlier ones do not
STOP_OFF = {
    "tol": None,
    "window": 100,
    "min_steps": 0,
    "patience": None,
    "metric": None,
    "mode": "max",
    "min_delta": 0.0,
}


def test_a_later_seed_with_the_stopping_rule_off_joins_seeds_that_predate_it(results):
    write_run(results, 0, -10.0)
    write_run(results, 1, -11.0, stop=STOP_OFF)
    readme = build(results)["README.md"]
    assert "| row a | -10.50 ± 0.71 |" in readme


@pytest.mark.parametrize("rule", [{"tol": 0.001}, {"patience": 3, "metric": "test/elbo"}])
def test_a_later_seed_that_stops_early_is_another_config(results, rule):
    write_run(results, 0, -10.0)
    write_run(results, 1, -11.0, stop={**STOP_OFF, **rule})
    with pytest.raises(ReportError, match=r"seed 1 was run with another config.*trainer\.stop"):
        build(results)


def test_settings_of_a_rule_that_is_off_do_not_split_a_row(results):
    # both off: a window matters only to a rule that is set, so the runs are one config
    write_run(results, 0, -10.0, stop=STOP_OFF)
    write_run(results, 1, -11.0, stop={**STOP_OFF, "window": 5})
    assert "| row a | -10.50 ± 0.71 |" in build(results)["README.md"]


@pytest.mark.parametrize(("nats", "joins"), [(0.0, True), (0.25, False)])
def test_a_later_seed_joins_only_without_free_bits(results, nats, joins):
    write_run(results, 0, -10.0)
    folder = results / "runs" / "toy" / "a" / "seed=1"
    write_run(results, 1, -11.0)
    summary = json.loads((folder / "summary.json").read_text())
    summary["config"]["model"] = {"free_bits": nats}
    (folder / "summary.json").write_text(json.dumps(summary))
    if joins:
        assert "| row a | -10.50 ± 0.71 |" in build(results)["README.md"]
    else:
        with pytest.raises(ReportError, match=r"differs in model\.free_bits"):
            build(results)


@pytest.mark.parametrize("replay", [True, False])
def test_replayed_and_pyro_steps_are_one_config(results, replay):
    """trainer.replay changes no number (zoo.replay, tested bit for bit): a seed run with it,
    either way, joins seeds that predate the key."""
    write_run(results, 0, -10.0)
    folder = results / "runs" / "toy" / "a" / "seed=1"
    write_run(results, 1, -11.0)
    summary = json.loads((folder / "summary.json").read_text())
    summary["config"]["trainer"]["replay"] = replay
    (folder / "summary.json").write_text(json.dumps(summary))
    assert "| row a | -10.50 ± 0.71 |" in build(results)["README.md"]
