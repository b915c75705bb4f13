"""Figures: small functions that each write one PNG and return its path.

matplotlib is imported with the non-interactive Agg backend: runs happen on machines with
no display.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from zoo.errors import OutputError  # noqa: E402
from zoo.files import write_atomic  # noqa: E402


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
        plt.close(fig)
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
    fig, ax = plt.subplots(figsize=(5, 5))
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
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.imshow(_tile(pairs, shape, columns=16), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, path)


def elbo_curve(history: list[dict], path: Path) -> Path:
    """Training objective and test ELBO per data point against the epoch, beta on a twin axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig, ax = plt.subplots(figsize=(5, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("posterior means of the test set")
    return _save(fig, path)
