"""``python -m zoo.report``: the results tables, rebuilt from the runs' summaries.

``results/tables.yaml`` declares each table: a title, the metric columns, the seeds, the
rows (each a list of overrides to ``python -m zoo``), and reference numbers with their
sources. A row's runs are made by its command::

    python -m zoo -m <overrides> seed=0,1,2 hydra.sweep.dir=results/runs/<table>/<row>

A table may sweep another key than the seed (``sweep: {key: data.fold, values: [0, 1, 2]}``
for cross-validation), and a row may be made by a baseline script that takes the same
overrides and writes summaries of the same form (``script: benchmarks/sklearn_gmm.py
--method em``; its command ends in ``--out results/runs/<table>/<row>``). A column is a
metric name, or a dotted path into the summary (``time.fit_s``, ``resources.peak_rss_mb``).
A table's ``chart`` draws some of its columns against each row's ``chart: {x, series}``.

Each run's folder is ``results/runs/<table>/<row>/<run>/``; only its ``summary.json`` is
committed (the rest of each run folder is ignored by git), so the tables can be rebuilt and
checked without retraining. The report writes
``results/README.md`` and one CSV per table. It refuses to put runs of different configs in
one row, marks a row whose seeds are incomplete, and will not replace a committed table by
one with fewer runs unless asked (``--force``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ZooError

RESULTS = Path("results")
SPEC_NAME = "tables.yaml"
def _always(value: Any) -> bool:
    return True


# The keys whose values may differ between the runs of one row (besides the swept key), each
# with the test of a value that does not split the row; a key whose test passes is left out
# of the comparison. Two kinds:
# - keys that never change a number: the seed, resume, progress bars, the device, a logger
#   (zoo/loggers.py), and trainer.replay (zoo/replay.py: bit-for-bit Pyro's steps, tested);
# - keys added after some committed runs were made, at the value that keeps the behaviour
#   from before they existed, so that a later seed of a row (which records the key) joins the
#   earlier ones (which do not): trainer.stop (issue 17) does nothing unless one of its two
#   rules is set; model.free_bits (issue 18) is off at 0.
ROW_NEUTRAL = {
    ("seed",): _always,
    ("resume",): _always,
    ("trainer", "progress"): _always,
    ("device",): _always,
    ("logger",): _always,
    ("trainer", "replay"): _always,
    ("trainer", "stop"): lambda stop: stop.get("tol") is None and stop.get("patience") is None,
    ("model", "free_bits"): lambda nats: nats == 0,
}


class ReportError(ZooError):
    """The runs do not make a valid table."""


def load_spec(results: Path) -> dict[str, dict]:
    path = results / SPEC_NAME
    if not path.is_file():
        raise ReportError(f"no table spec at {path}")
    return yaml.safe_load(path.read_text())


def row_dir(results: Path, table: str, row: dict) -> Path:
    return results / "runs" / table / row["id"]


def sweep_of(spec: dict) -> dict:
    """What a table's runs vary: ``{key, values, label}``; the seeds unless it says otherwise."""
    if "sweep" in spec:
        sweep = spec["sweep"]
        return {"label": sweep["key"], **sweep}
    return {"key": "seed", "values": spec["seeds"], "label": "seeds"}


def row_command(table: str, row: dict, sweep: dict) -> str:
    overrides = " ".join(row["overrides"])
    swept = f"{sweep['key']}={','.join(str(v) for v in sweep['values'])}"
    out = f"results/runs/{table}/{row['id']}"
    if "script" in row:
        return f"python {row['script']} {overrides} {swept} --out {out}"
    return f"python -m zoo -m {overrides} {swept} hydra.sweep.dir={out}"


def _lookup(tree: dict, dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; None where a key is missing."""
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _without_row_neutral_keys(config: dict, swept: str) -> dict:
    config = json.loads(json.dumps(config))
    for path, neutral in {**ROW_NEUTRAL, tuple(swept.split(".")): _always}.items():
        parent = _parent(config, path)
        if path[-1] in parent and neutral(parent[path[-1]]):
            del parent[path[-1]]
    return config


def _parent(config: dict, path: tuple[str, ...]) -> dict:
    node = config
    for key in path[:-1]:
        node = node.get(key, {})
    return node


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    # a section one run lacks is compared as empty: the keys it differs in are named
    if isinstance(a, dict) and b is None:
        b = {}
    if isinstance(b, dict) and a is None:
        a = {}
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def collect(directory: Path, where: str, swept: str = "seed") -> list[dict]:
    """The summaries of a row's runs, sorted by the swept key (the seed by default); refuses
    runs of different configs."""
    summaries = sorted(
        (json.loads(p.read_text()) for p in directory.glob("*/summary.json")),
        key=lambda s: _lookup(s["config"], swept),
    )
    if summaries:
        reference = _without_row_neutral_keys(summaries[0]["config"], swept)
        first = _lookup(summaries[0]["config"], swept)
        for summary in summaries[1:]:
            differ = _differences(reference, _without_row_neutral_keys(summary["config"], swept))
            if differ:
                raise ReportError(
                    f"{where}: {swept} {_lookup(summary['config'], swept)} was run with another "
                    f"config than {swept} {first} (differs in {', '.join(differ)}); rerun the "
                    "row's command."
                )
    return summaries


def _metric(summary: dict, key: str) -> Any:
    """A metric by name, else a dotted path into the summary; None where there is neither."""
    if key in summary["metrics"]:
        return summary["metrics"][key]
    return _lookup(summary, key) if "." in key else None


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def _format(mean: float, sd: float, fmt: str) -> str:
    text = format(mean, fmt)
    return text if math.isnan(sd) else f"{text} ± {format(sd, fmt)}"


def _seconds(value: float) -> str:
    """Whole seconds from 10 s up; below, two significant digits (0.16 s, not 0 s)."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


def table_rows(results: Path, name: str, spec: dict) -> list[dict]:
    """One dict per row: its cells (formatted), raw values for the CSV, and its run count."""
    rows = []
    swept = sweep_of(spec)["key"]
    for row in spec["rows"]:
        summaries = collect(row_dir(results, name, row), f"table {name}, row {row['id']}", swept)
        cells, raw = {}, {}
        for key, column in spec["columns"].items():
            values = [_metric(s, key) for s in summaries]
            values = [v for v in values if v is not None]
            if values:
                mean, sd = _mean_sd([float(v) for v in values])
                cells[key] = _format(mean, sd, column.get("format", ".2f"))
                raw[key], raw[f"{key} sd"] = mean, sd
            else:
                cells[key] = "–"
        times = [s["time"]["train_s"] for s in summaries]
        rows.append(
            {
                "row": row,
                "runs": len(summaries),
                "seeds": [_lookup(s["config"], swept) for s in summaries],
                "cells": cells,
                "raw": raw,
                "train_s": statistics.median(times) if times else math.nan,
                "machine": summaries[0].get("machine") if summaries else None,
            }
        )
    return rows


def render_table(name: str, spec: dict, rows: list[dict]) -> str:
    sweep = sweep_of(spec)
    seeds = sweep["values"]
    columns = spec["columns"]
    header = [
        "row",
        *[c["label"].replace("|", "\\|") for c in columns.values()],
        sweep["label"],
        "train time (median)",
    ]
    lines = [f"## {spec['title']}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        complete = r["runs"] == len(seeds)
        seed_cell = f"{r['runs']}/{len(seeds)}" + ("" if complete else " **incomplete**")
        time_cell = "–" if math.isnan(r["train_s"]) else _seconds(r["train_s"])
        cells = [r["row"]["label"], *r["cells"].values(), seed_cell, time_cell]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Commands, one per row:", "", "```bash"]
    lines += [row_command(name, r["row"], sweep) for r in rows]
    lines += ["```", ""]
    machines = {json.dumps(r["machine"], sort_keys=True) for r in rows if r["machine"]}
    if machines:
        described = "; ".join(_describe_machine(json.loads(m)) for m in sorted(machines))
        lines += [
            f"Machine: {described}. Values are mean ± standard deviation over {sweep['label']}.",
            "",
        ]
    for reference in spec.get("references", []):
        lines.append(f"- Reference: {reference}")
    if spec.get("references"):
        lines.append("")
    for note in spec.get("notes", []):
        lines.append(f"- {note}")
    if spec.get("notes"):
        lines.append("")
    for figure in [*spec.get("figures", []), *([spec["chart"]] if "chart" in spec else [])]:
        lines.append(f"![{figure['caption']}]({figure['path']})")
        lines.append("")
    return "\n".join(lines)


def _describe_machine(m: dict) -> str:
    gpu = m.get("gpu") or "no GPU"
    return f"{m.get('cpu_count')} CPU cores, {gpu}, {m.get('system')} {m.get('machine')}"


def render_csv(spec: dict, rows: list[dict]) -> str:
    out = io.StringIO()
    keys = [k for key in spec["columns"] for k in (key, f"{key} sd")]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "runs", "seeds", *keys, "train_s_median"])
    for r in rows:
        values = [_csv_number(r["raw"].get(k)) for k in keys]
        seeds = " ".join(str(s) for s in r["seeds"])
        writer.writerow([r["row"]["id"], r["runs"], seeds, *values, _csv_number(r["train_s"])])
    return out.getvalue()


def _csv_number(value: float | None) -> str:
    return (
        "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"
    )


def committed_runs(csv_path: Path) -> dict[str, int]:
    if not csv_path.is_file():
        return {}
    with open(csv_path) as f:
        return {row["row"]: int(row["runs"]) for row in csv.DictReader(f)}


def copy_figures(results: Path, name: str, spec: dict) -> None:
    """Copies each listed figure from the first run of its row, where that run is present."""
    for figure in spec.get("figures", []):
        source_row = next(r for r in spec["rows"] if r["id"] == figure["row"])
        runs = sorted(row_dir(results, name, source_row).glob(f"*/figures/{figure['file']}"))
        if runs:
            target = results / figure["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runs[0], target)


def draw_chart(results: Path, spec: dict, rows: list[dict]) -> Path | None:
    """The table's ``chart``, where it has one: each listed column against the rows' ``x``,
    a line per ``series``, mean and sd over the runs. Written by the report, not a run."""
    chart = spec.get("chart")
    if chart is None:
        return None
    panels = []
    for key in chart["columns"]:
        series: dict[str, list] = {}
        for r in rows:
            where = r["row"].get("chart")
            if where is not None and f"{key} sd" in r["raw"]:
                point = (float(where["x"]), r["raw"][key], r["raw"][f"{key} sd"])
                series.setdefault(where["series"], []).append(point)
        panels.append({"label": spec["columns"][key]["label"], "series": series})
    from zoo import plots  # matplotlib only where a chart is drawn

    return plots.series_panels(panels, results / chart["path"], x_label=chart["x_label"])


def build(results: Path = RESULTS, *, force: bool = False) -> dict[str, str]:
    """The report's files, ``{relative path: text}``; raises if a table would lose runs."""
    spec = load_spec(results)
    files: dict[str, str] = {}
    sections = [
        "# Results",
        "",
        "Generated by `python -m zoo.report` from `results/tables.yaml` and the runs' "
        "`summary.json` files under `results/runs/`. Each row's command remakes its runs; "
        "`python -m zoo.report` then rebuilds this page.",
        "",
    ]
    for name, table in spec.items():
        rows = table_rows(results, name, table)
        csv_name = f"{name}.csv"
        before = committed_runs(results / csv_name)
        for r in rows:
            had = before.get(r["row"]["id"], 0)
            if r["runs"] < had and not force:
                raise ReportError(
                    f"table {name}, row {r['row']['id']}: {results / csv_name} has {had} runs, "
                    f"only {r['runs']} are present now; pass --force to replace it anyway."
                )
        files[csv_name] = render_csv(table, rows)
        sections.append(render_table(name, table, rows))
    files["README.md"] = "\n".join(sections).rstrip() + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    parser.add_argument("--force", action="store_true", help="replace tables that would lose runs")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare with the committed files; exit 1 if they differ",
    )
    args = parser.parse_args(argv)
    try:
        files = build(args.results, force=args.force)
    except ZooError as e:
        print(f"zoo.report: error: {e}", file=sys.stderr)
        return 2
    stale = [
        p
        for p, text in files.items()
        if not (args.results / p).is_file() or (args.results / p).read_text() != text
    ]
    if args.check:
        for path in stale:
            print(f"zoo.report: {args.results / path} is out of date", file=sys.stderr)
        return 1 if stale else 0
    spec = load_spec(args.results)
    for name, table in spec.items():
        copy_figures(args.results, name, table)
        if "chart" in table:  # its rows again: build() returns text, not the rows
            draw_chart(args.results, table, table_rows(args.results, name, table))
    for path, text in files.items():
        (args.results / path).write_text(text)
        print(f"wrote {args.results / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
