"""The SVI tutorial's claims about scale parameters, measured as gradient noise (issue 18).

For each model and way of training it (a row: overrides of ``python -m zoo``), train with the
zoo's trainer and, at three snapshots (before the first step, half way, at the end), draw the
gradient of the ELBO ``--draws`` times on one fixed minibatch of the training set, so that the
spread is the estimator's own (the Monte Carlo draws of z or of the weights), not the
minibatch's. For each parameter group: the signal-to-noise ratio of its gradient vector,
|E g| / sqrt(tr Cov g), and the mean variance of its elements. The estimators (closed-form or
Monte Carlo KL, local reparameterization, particles) are compared at the same parameters, the
snapshots of the preset's training; each way of training (a row) is also trained and measured
along its own path, which is the only comparison for a parameterization (exp or softplus
scale). Beside them, how training went: the final periodic test metric
and the steps to reach 95% of the way from the row's first evaluation to the first row's final
value (the reference of its model).

    python benchmarks/gradient_variance.py                      # all models, seeds 0 1 2
    python benchmarks/gradient_variance.py --models vae --seeds 0 --draws 16   # a quick look

It writes ``results/gradient_variance/`` (``--out``): ``measurements.json`` (every number),
``README.md`` (the tables) and ``snr.png`` (the SNR against training progress). The models
are the small presets (digits VAE, toy BNN, Old Faithful GMM) so that three seeds of every row
fit in minutes on a CPU; the GMM trains a fixed 400 full-batch epochs here (its preset stops
when the loss has converged), so that its snapshots are at the same steps in every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_dir
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.app import build_model  # noqa: E402
from zoo.config import validate  # noqa: E402
from zoo.data import load_dataset  # noqa: E402
from zoo.handlers import LocalReparameterizationMessenger  # noqa: E402
from zoo.plots import _pyplot  # noqa: E402
from zoo.schedules import schedule_from  # noqa: E402
from zoo.train import Trainer  # noqa: E402


def vae_groups(model) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """The encoder's last layer split into its loc and scale heads (rows [:L] and [L:]), and
    the decoder's weights."""
    head = model.encoder.encoder.net[-1]
    latent = model.latent_dim
    return {
        "encoder scale head": lambda: [head.weight[latent:], head.bias[latent:]],
        "encoder loc head": lambda: [head.weight[:latent], head.bias[:latent]],
    }, [head.weight, head.bias]


def bnn_groups(model):
    guide = model.approximation
    rhos = [p for n, p in guide.named_parameters() if n.startswith("rhos.")]
    locs = [p for n, p in guide.named_parameters() if n.startswith("locs.")]
    return {"rho (scales)": lambda: rhos, "mu (means)": lambda: locs}, rhos + locs


def gmm_groups(model):
    guide = model.posterior
    named = dict(guide.named_parameters())
    scales = [named["locs_scale_raw"], named["scales_scale_raw"]]
    locs = [named["locs_loc"], named["scales_loc"]]
    return {"global scale parameters": lambda: scales, "global locs": lambda: locs}, scales + locs


def use_local_reparameterization(model, on: bool) -> None:
    """Local reparameterization on or off for the BNN's next draws, at the same parameters
    (the list of handlers its ``model`` enters; private to zoo.models.bnn)."""
    model._handlers = [LocalReparameterizationMessenger()] if on else []


def trace(particles: int = 1):
    return lambda model: (Trace_ELBO(num_particles=particles, vectorize_particles=False), None)


def meanfield(model):
    return TraceMeanField_ELBO(), None


def sampled_weights(model):
    return Trace_ELBO(), lambda: use_local_reparameterization(model, False)


def local_reparameterization(model):
    return Trace_ELBO(), lambda: use_local_reparameterization(model, True)


# per model: the preset and its overrides here; the estimators compared at the same parameters
# (the snapshots of the preset's own training); and the ways of training it (rows)
MODELS = {
    "vae": {
        "base": ["experiment=vae_digits", "trainer.eval_every=5"],
        "metric": "test/elbo",
        "groups": vae_groups,
        "estimators": {
            "Monte Carlo KL, 1 particle (the preset)": trace(),
            "closed-form KL (TraceMeanField_ELBO)": meanfield,
            "Monte Carlo KL, 8 particles": trace(8),
        },
        "rows": {
            "exp scale, Monte Carlo KL, 1 particle (the preset)": [],
            "softplus scale": ["model.scale=softplus"],
            "closed-form KL (TraceMeanField_ELBO)": ["trainer.elbo=meanfield"],
            "8 particles": ["trainer.num_particles=8"],
        },
    },
    "bnn": {
        # a N(0, 1) prior, as the Fashion-MNIST presets: the toy preset's scale mixture has no
        # closed-form KL, and TraceMeanField_ELBO would fall back on the Monte Carlo one
        "base": ["experiment=bnn_toy", "model.prior=gaussian", "trainer.eval_every=5"],
        "metric": "test/log_likelihood",
        "groups": bnn_groups,
        "estimators": {
            "sampled weights, Monte Carlo KL, 1 particle (the toy preset, N(0, 1) prior)": sampled_weights,
            "local reparameterization": local_reparameterization,
            "closed-form KL (TraceMeanField_ELBO)": meanfield,
            "sampled weights, 8 particles": trace(8),
        },
        # 8 particles are not trained here: 8 times the preset's minute per seed
        "rows": {
            "sampled weights, Monte Carlo KL, 1 particle (the toy preset, N(0, 1) prior)": [],
            "local reparameterization": ["model.local_reparameterization=true"],
            "closed-form KL (TraceMeanField_ELBO)": ["trainer.elbo=meanfield"],
        },
    },
    "gmm": {
        "base": [
            "experiment=gmm_old_faithful",
            "trainer.epochs=400",
            "trainer.stop.tol=null",
            "trainer.eval_every=20",
        ],
        "metric": "test/log_pred_plugin",
        "groups": gmm_groups,
        "estimators": {
            "Monte Carlo KL, 1 particle (the preset)": trace(),
            "closed-form KL (TraceMeanField_ELBO)": meanfield,
            "Monte Carlo KL, 8 particles": trace(8),
        },
        "rows": {
            "Monte Carlo KL, 1 particle (the preset)": [],
            "closed-form KL (TraceMeanField_ELBO)": ["trainer.elbo=meanfield"],
            "8 particles": ["trainer.num_particles=8"],
        },
    },
}
SNAPSHOTS = (0.0, 0.5, 1.0)  # fractions of the row's epochs
FRACTION = 0.95  # of the way from the first evaluation to the reference row's final value


def configure(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return validate(compose("config", overrides=overrides))


def gradient_draws(elbo, model, x, y, size, params, draws: int) -> list[torch.Tensor]:
    """``draws`` independent gradients of the loss (the negative ELBO per data set, beta 1)
    with respect to ``params``, each flattened and concatenated."""
    out = []
    for _ in range(draws):
        args = (x,) if y is None else (x, y)
        loss = elbo.differentiable_loss(model.model, model.guide, *args, size=size)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append(
            torch.cat(
                [(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)]
            )
        )
    return out


def group_statistics(groups, params, draws: list[torch.Tensor]) -> dict[str, dict]:
    """Per group, from the concatenated draws over ``params``: the SNR of the group's gradient
    vector, |E g| / sqrt(tr Cov g) (a per-element median is unstable where some elements'
    gradients are almost deterministic and others pure noise, as the BNN's rho are), the mean
    variance of its elements, and that median for the record."""
    stacked = torch.stack(draws)  # (draws, elements of params)
    offsets, start = {}, 0
    for p in params:
        offsets[id(p)] = start
        start += p.numel()
    out = {}
    for name, tensors in groups.items():
        columns = []
        for t in tensors():
            base = t._base if t._base is not None else t
            # a view of a parameter (the encoder's heads): its elements' positions in the base
            index = torch.arange(base.numel()).view(base.shape)
            if t._base is not None:
                index = index.as_strided(t.shape, t.stride(), t.storage_offset())
            columns.append(offsets[id(base)] + index.flatten())
        g = stacked[:, torch.cat(columns)].double()
        n = len(g)
        mean, variance = g.mean(0), g.var(0)
        total = variance.sum()
        # |E g|^2 without the upward bias of the squared sample mean, tr(Cov) / n
        signal = (mean.square().sum() - total / n).clamp_min(0.0)
        out[name] = {
            "snr": (signal / total).sqrt().item(),
            "variance_mean": (total / g.shape[1]).item(),
            "snr_median_element": (mean.abs() / variance.sqrt().clamp_min(1e-30)).median().item(),
        }
    return out


def run_row(model_name: str, row: str, overrides: list[str], seed: int, draws: int) -> dict:
    spec_model = MODELS[model_name]
    spec = configure(spec_model["base"] + overrides + [f"seed={seed}", "trainer.progress=false"])
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    data = load_dataset(spec.data.name, **spec.data.model_dump(exclude={"name"}))
    model = build_model(spec, data)
    periodic = spec.periodic_evaluation.model_dump()
    epochs = spec.trainer.epochs
    trainer = Trainer(
        model,
        data,
        spec.optim.build(),
        spec.trainer,
        schedule=schedule_from(spec.anneal),
        evaluate=lambda: model.evaluate(data, **periodic),
    )
    metric = spec_model["metric"]
    batch = spec.trainer.batch_size or len(data.train_x)
    generator = torch.Generator().manual_seed(1000 + seed)
    index = torch.randperm(len(data.train_x), generator=generator)[:batch]
    x = model.prepare_epoch(data.train_x)[index]
    y = data.train_y[index] if data.train_y is not None else None
    with torch.no_grad():
        first = model.evaluate(data, **periodic)[metric]
    snapshots, start = [], time.perf_counter()
    # the preset row also measures every estimator at its snapshots; a row, its own
    estimators = (
        spec_model["estimators"] if not overrides else {row: lambda m: (trainer.elbo, None)}
    )
    for fraction in SNAPSHOTS:
        target = round(fraction * epochs)
        if target > trainer.epoch:
            trainer.settings = trainer.settings.model_copy(update={"epochs": target})
            trainer.fit()
        groups, params = spec_model["groups"](model)
        handlers = list(getattr(model, "_handlers", []))
        measured = {}
        for name, make in estimators.items():
            elbo, prepare = make(model)
            if prepare is not None:
                prepare()
            # on a forked RNG: the measurement leaves the row's training as it would be without it
            with pyro.validation_enabled(False), torch.random.fork_rng(devices=[]):
                draws_ = gradient_draws(elbo, model, x, y, len(data.train_x), params, draws)
            measured[name] = group_statistics(groups, params, draws_)
            if hasattr(model, "_handlers"):
                model._handlers = list(handlers)  # as the row trains
        snapshots.append({"fraction": fraction, "epoch": trainer.epoch, "estimators": measured})
    steps_per_epoch = trainer.history[-1]["train/steps_total"] / trainer.epoch
    curve = [(0, first)] + [
        (r["train/steps_total"], r[metric]) for r in trainer.history if metric in r
    ]
    return {
        "model": model_name,
        "row": row,
        "seed": seed,
        "overrides": spec_model["base"] + overrides,
        "metric": metric,
        "final": curve[-1][1],
        "curve": curve,
        "steps_per_epoch": steps_per_epoch,
        "snapshots": snapshots,
        "seconds": time.perf_counter() - start,
    }


def steps_to_reach(curve, threshold: float) -> int | None:
    """The first evaluated step whose metric (higher is better) reaches ``threshold``."""
    return next((step for step, value in curve if value >= threshold), None)


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.fmean(values):.3g} ± {statistics.stdev(values):.2g}"


def _own(run: dict) -> str:
    """The estimator a run trained with: the preset's is its model's first."""
    return next(iter(run["snapshots"][0]["estimators"]))


def _snr(runs: list[dict], estimator: str | None, group: str, i: int) -> float:
    return statistics.fmean(
        r["snapshots"][i]["estimators"][estimator or _own(r)][group]["snr"] for r in runs
    )


def _variance(runs: list[dict], estimator: str | None, group: str, i: int) -> float:
    return statistics.fmean(
        r["snapshots"][i]["estimators"][estimator or _own(r)][group]["variance_mean"] for r in runs
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(runs: list[dict], command: str) -> str:
    lines = [
        "# Gradient variance of the scale parameters",
        "",
        "Generated by `benchmarks/gradient_variance.py` (its docstring says what is measured):",
        "",
        f"```bash\n{command}\n```",
        "",
        "SNR: of a group's gradient vector g over the draws on one fixed minibatch, "
        "|E g| / sqrt(tr Cov g) (|E g|^2 estimated without the bias of the squared sample mean), "
        "at the start, middle and end of training; variance: the mean over the group's elements "
        "of the draws' variance. Means over seeds.",
        "",
    ]
    for model_name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model_name]
        rows = list(dict.fromkeys(r["row"] for r in mine))
        preset = [r for r in mine if r["row"] == rows[0]]
        groups = list(next(iter(preset[0]["snapshots"][0]["estimators"].values())))
        estimators = list(preset[0]["snapshots"][0]["estimators"])
        lines += [
            f"## {model_name}: estimators at the same parameters",
            "",
            f"At the snapshots of the preset's training ({len(preset)} seeds), each estimator's "
            "draws; the variance as a ratio to the preset estimator's at the same snapshot "
            "(middle of training).",
            "",
        ]
        header = ["estimator"]
        for g in groups:
            header += [f"{g}: SNR start / mid / end", f"{g}: variance ratio (mid)"]
        lines += [_row(header), _row(["---"] * len(header))]
        for e in estimators:
            cells = [e]
            for g in groups:
                snr = " / ".join(f"{_snr(preset, e, g, i):.3f}" for i in range(len(SNAPSHOTS)))
                ratio = _variance(preset, e, g, 1) / _variance(preset, estimators[0], g, 1)
                cells += [snr, f"{ratio:.3f}"]
            lines.append(_row(cells))
        reference = statistics.fmean(r["final"] for r in preset)
        lines += [
            "",
            f"## {model_name}: trained each way",
            "",
            "Each row trained with its own estimator and measured along its own training. "
            f"Steps to {FRACTION:.0%}: per seed, the first evaluated step at "
            f"{FRACTION:.0%} of the way from the row's first evaluation to the preset's mean "
            "final value (a dash: not reached).",
            "",
        ]
        header = ["row"] + [f"{g}: SNR start / mid / end" for g in groups]
        header += [f"final {mine[0]['metric']}", f"steps to {FRACTION:.0%}", "seeds"]
        lines += [_row(header), _row(["---"] * len(header))]
        for row in rows:
            rr = [r for r in mine if r["row"] == row]
            cells = [row]
            for g in groups:
                cells.append(
                    " / ".join(f"{_snr(rr, None, g, i):.3f}" for i in range(len(SNAPSHOTS)))
                )
            reached = []
            for r in rr:
                first = r["curve"][0][1]
                reached.append(steps_to_reach(r["curve"], first + FRACTION * (reference - first)))
            cells += [
                mean_sd([r["final"] for r in rr]),
                " / ".join("–" if s is None else str(s) for s in reached),
                str(len(rr)),
            ]
            lines.append(_row(cells))
        lines.append("")
    lines += ["![gradient SNR of each group against training progress](snr.png)", ""]
    return "\n".join(lines)


def figure(runs: list[dict], path: Path) -> None:
    """A row of panels per model, one per parameter group: the SNR of each way of training
    along its own training (solid) and of each other estimator at the preset's parameters
    (dashed); one legend per model, beside its panels."""
    plt = _pyplot()
    models = list(dict.fromkeys(r["model"] for r in runs))
    groups = {
        m: list(
            next(
                iter(
                    next(r for r in runs if r["model"] == m)["snapshots"][0]["estimators"].values()
                )
            )
        )
        for m in models
    }
    columns = max(len(g) for g in groups.values())
    fig, axes = plt.subplots(
        len(models), columns, figsize=(5.0 * columns + 4.5, 3.2 * len(models)), squeeze=False
    )
    for axes_row, m in zip(axes, models):
        rows = list(dict.fromkeys(r["row"] for r in runs if r["model"] == m))
        preset = [r for r in runs if r["model"] == m and r["row"] == rows[0]]
        for ax, g in zip(axes_row, groups[m]):
            for row in rows:
                rr = [r for r in runs if r["model"] == m and r["row"] == row]
                ax.plot(
                    SNAPSHOTS,
                    [_snr(rr, None, g, i) for i in range(len(SNAPSHOTS))],
                    marker="o",
                    label=f"trained: {row}",
                )
            for e in list(preset[0]["snapshots"][0]["estimators"])[1:]:
                ax.plot(
                    SNAPSHOTS,
                    [_snr(preset, e, g, i) for i in range(len(SNAPSHOTS))],
                    linestyle="--",
                    marker="x",
                    label=f"at the preset's parameters: {e}",
                )
            ax.set_yscale("log")
            ax.set_title(f"{m}: {g}", fontsize=10)
            ax.set_xticks(SNAPSHOTS, ["start", "middle", "end"])
            ax.set_ylabel("SNR, |E g| / sqrt(tr Cov g)", fontsize=8)
        for ax in axes_row[len(groups[m]) :]:
            ax.axis("off")
        axes_row[len(groups[m]) - 1].legend(
            fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False
        )
    fig.suptitle("Gradient signal-to-noise ratio during training (means over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gradient_variance")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other models' runs of the existing measurements.json, replace these",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    if args.merge and (args.out / "measurements.json").exists():
        kept = json.loads((args.out / "measurements.json").read_text())
        runs = [r for r in kept if r["model"] not in args.models]
    for model_name in args.models:
        for row, overrides in MODELS[model_name]["rows"].items():
            for seed in args.seeds:
                run = run_row(model_name, row, overrides, seed, args.draws)
                print(
                    f"{model_name:4s} seed {seed} {row}: final {run['final']:.4f}, "
                    f"{run['seconds']:.0f} s",
                    flush=True,
                )
                runs.append(run)
    order = list(MODELS)
    runs.sort(key=lambda r: order.index(r["model"]))  # stable: rows and seeds keep their order
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gradient_variance.py"  # --merge remakes a part of its output
    (args.out / "measurements.json").write_text(json.dumps(runs, indent=1) + "\n")
    (args.out / "README.md").write_text(table(runs, command.strip()))
    figure(runs, args.out / "snr.png")
    print(f"wrote {args.out}/README.md, measurements.json, snr.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
