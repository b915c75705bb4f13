"""The report: tables from summaries, refusals, and the committed tables are up to date."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

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


def write_run(results, seed, elbo, *, epochs=3, row="a"):
    folder = results / "runs" / "toy" / row / f"seed={seed}"
    folder.mkdir(parents=True)
    summary = {
        "seed": seed,
        "config": {"seed": seed, "trainer": {"epochs": epochs, "progress": seed == 0}},
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


def test_committed_tables_are_rebuilt_exactly_from_committed_summaries():
    files = build(REPO_RESULTS)
    for path, text in files.items():
        assert (REPO_RESULTS / path).read_text() == text, (
            f"results/{path} is stale: run python -m zoo.report"
        )
