"""Figures: small functions that each write one PNG and return its path.

matplotlib is imported at the first figure (it takes most of a second, which a run should
not pay before its first step) with the non-interactive Agg backend: runs happen on machines
with no display.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from zoo.errors import OutputError
from zoo.files import write_atomic


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Writes ``fig`` atomically: a failed write keeps the previous figure and raises
    :class:`~zoo.errors.OutputError` naming the file."""
    path = Path(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"could not create the figures folder {path.parent}: {e}") from e
        write_atomic(
            path,
            lambda f: fig.savefig(f, format=path.suffix[1:], dpi=120, bbox_inches="tight"),
            "figure",
        )
    finally:
        _pyplot().close(fig)
    return path


def _tile(images: torch.Tensor, shape: tuple[int, ...], columns: int) -> torch.Tensor:
    """(N, H*W) images -> one array of ``columns`` tiles a row, with light-grey gaps."""
    h, w = shape
    n = len(images)
    rows = math.ceil(n / columns)
    canvas = torch.full((rows * (h + 1) - 1, columns * (w + 1) - 1), 0.2)
    for i, image in enumerate(images.detach().cpu().reshape(n, h, w)):
        r, c = divmod(i, columns)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return canvas


def image_grid(
    images: torch.Tensor, shape: tuple[int, ...], path: Path, *, title: str = ""
) -> Path:
    """A grid of grey-scale images (values in [0, 1], 1 = ink)."""
    columns = math.ceil(math.sqrt(len(images)))
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    ax.imshow(_tile(images, shape, columns), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def image_pairs(
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    shape: tuple[int, ...],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Each input beside its output, in pairs of columns."""
    pairs = torch.stack([inputs, outputs], dim=1).reshape(2 * len(inputs), -1)
    fig, ax = _pyplot().subplots(figsize=(8, 4))
    ax.imshow(_tile(pairs, shape, columns=16), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def elbo_curve(history: list[dict], path: Path) -> Path:
    """Training objective and test ELBO per data point against the epoch, beta on a twin axis."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [-h["train/loss"] for h in history], label="train: annealed ELBO (MC)")
    tested = [h for h in history if "test/elbo" in h]
    if tested:
        ax.plot(
            [h["epoch"] for h in tested], [h["test/elbo"] for h in tested], "o-", label="test ELBO"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per data point")
    if any(h.get("beta", 1.0) != 1.0 for h in history):
        beta_ax = ax.twinx()
        beta_ax.plot(
            epochs, [h["beta"] for h in history], color="grey", linestyle=":", label="beta"
        )
        beta_ax.set_ylabel("beta (end of epoch)")
        beta_ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latent_scatter(z: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """2-D posterior means coloured by label."""
    z, labels = z.detach().cpu(), labels.detach().cpu()
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("posterior means of the test set")
    return _save(fig, path)


def mixture_ellipses(
    x: torch.Tensor,
    assignment: torch.Tensor,
    weights: torch.Tensor,
    locs: torch.Tensor,
    scales: torch.Tensor,
    path: Path,
    *,
    corr_cholesky: torch.Tensor | None = None,
    feature_names: tuple[str, ...] | None = None,
    title: str = "",
) -> Path:
    """Points coloured by their component, and each component's 1- and 2-sigma ellipses in
    the first two features: axis-aligned for diagonal covariances, turned along the
    covariance's eigenvectors where ``corr_cholesky`` (K, D, D) gives the correlations."""
    from matplotlib.patches import Ellipse

    x, assignment = x.detach().cpu(), assignment.detach().cpu()
    weights, locs, scales = (t.detach().cpu() for t in (weights, locs, scales))
    d = scales.shape[-1]
    corr = (
        torch.eye(d).expand(len(weights), d, d)
        if corr_cholesky is None
        else corr_cholesky.detach().cpu() @ corr_cholesky.detach().cpu().transpose(-1, -2)
    )
    covariance = (scales.unsqueeze(-1) * corr * scales.unsqueeze(-2))[:, :2, :2].double()
    variances, axes = torch.linalg.eigh(covariance)  # ascending eigenvalues, (K, 2) and (K, 2, 2)
    colours = _pyplot().get_cmap("tab10")
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    ax.scatter(x[:, 0], x[:, 1], c=[colours(k % 10) for k in assignment.tolist()], s=6, alpha=0.5)
    for k in range(len(weights)):
        major = axes[k, :, 1]  # the eigenvector of the larger variance
        angle = math.degrees(math.atan2(major[1].item(), major[0].item()))
        for n_sigma, style in ((1, "-"), (2, "--")):
            ax.add_patch(
                Ellipse(
                    (locs[k, 0].item(), locs[k, 1].item()),
                    2 * n_sigma * variances[k, 1].clamp_min(0).sqrt().item(),
                    2 * n_sigma * variances[k, 0].clamp_min(0).sqrt().item(),
                    angle=angle,
                    fill=False,
                    edgecolor=colours(k % 10),
                    linestyle=style,
                    linewidth=1.5,
                )
            )
        ax.annotate(
            f"w={weights[k]:.2f}",
            (locs[k, 0].item(), locs[k, 1].item()),
            ha="center",
            fontweight="bold",
        )
    names = feature_names or ("x[0]", "x[1]")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def regression_bands(
    grid: torch.Tensor,
    predictions: torch.Tensor,
    intervals: dict[float, tuple[torch.Tensor, torch.Tensor]],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Predictive mean and central intervals over a 1-D grid, with the training data.

    :param grid: (G,) inputs.
    :param predictions: (S, G) draws from the predictive distribution.
    :param intervals: ``{level: (low (G,), high (G,))}``, e.g. for 0.5 and 0.95.
    """
    grid, predictions = grid.detach().cpu(), predictions.detach().cpu()
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    for level, alpha in zip(sorted(intervals, reverse=True), (0.2, 0.4, 0.6)):
        low, high = (t.detach().cpu() for t in intervals[level])
        ax.fill_between(grid, low, high, color="C0", alpha=alpha, lw=0, label=f"{level:.0%}")
    ax.plot(grid, predictions.mean(0), color="C0", label="predictive mean")
    ax.scatter(train_x.cpu(), train_y.cpu(), s=4, color="k", alpha=0.6, label="training data")
    ax.set_xlim(grid.min().item(), grid.max().item())
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reliability_diagram(
    confidence: torch.Tensor,
    accuracy: torch.Tensor,
    counts: torch.Tensor,
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Accuracy against confidence per equal-width bin; the diagonal is perfect calibration.

    :param confidence: (B,) mean confidence of each bin.
    :param accuracy: (B,) accuracy of each bin.
    :param counts: (B,) number of predictions in each bin; empty bins are not drawn.
    """
    confidence, accuracy, counts = (t.detach().cpu() for t in (confidence, accuracy, counts))
    bins = len(counts)
    centers = (torch.arange(bins) + 0.5) / bins
    used = counts > 0
    fig, (ax, hist) = _pyplot().subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(centers[used], accuracy[used], width=1 / bins, edgecolor="k", label="accuracy")
    ax.bar(
        centers[used],
        (confidence - accuracy)[used],
        bottom=accuracy[used],
        width=1 / bins,
        color="C3",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    hist.bar(centers, counts / counts.sum(), width=1 / bins, edgecolor="k", color="grey")
    hist.set_xlabel("confidence (maximum predictive probability)")
    hist.set_ylabel("share")
    return _save(fig, path)


def entropy_histograms(entropies: dict[str, torch.Tensor], path: Path, *, title: str = "") -> Path:
    """Histograms of the predictive entropy of each set of inputs (the test set first, then
    the out-of-distribution sets), as densities over one range, from 0 to the largest."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    values = {name: e.detach().cpu() for name, e in entropies.items()}
    top = max(max(v.max().item() for v in values.values()), 1e-6)
    edges = torch.linspace(0.0, top, 41)
    for i, (name, v) in enumerate(values.items()):
        ax.hist(
            v.numpy(),
            bins=edges.numpy(),
            density=True,
            histtype="step",
            lw=2,
            color=f"C{i}",
            label=f"{name} (mean {v.mean().item():.2f})",
        )
    ax.set_xlabel("predictive entropy (nats)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def series_panels(
    panels: list[dict],
    path: Path,
    *,
    x_label: str,
    log_x: bool = True,
    log_y: bool = True,
) -> Path:
    """One panel per quantity, each a line per series: e.g. fit time and peak memory
    against N, for the zoo and scikit-learn.

    :param panels: ``[{"label": str, "series": {name: [(x, mean, sd), ...]}}]``; sd may be NaN.
    """
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for name, points in panel["series"].items():
            points = sorted(points)
            xs, means, sds = zip(*points)
            sds = [0.0 if math.isnan(s) else s for s in sds]
            ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=name)
        ax.set_xscale("log" if log_x else "linear")
        ax.set_yscale("log" if log_y else "linear")
        ax.set_xlabel(x_label)
        ax.set_ylabel(panel["label"])
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)
