"""The optimizer flags that the zoo-against-PyTorch benchmarks share.

``--optim`` picks the zoo's ``optim.implementation``; ``--torch-adam`` gives the plain-PyTorch
reference the same torch Adam implementation (``fused``, ``foreach``), so that a ratio can
show how much of a gain is the zoo's and how much is torch's faster Adam, which a hand-written
step could use too.
"""

from __future__ import annotations

import argparse

import torch

from zoo.optim import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS


def add_optim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optim",
        default=DEFAULT_IMPLEMENTATION,
        choices=[*IMPLEMENTATIONS, "per_parameter"],
        help="the zoo's optim.implementation (default: the zoo's default)",
    )
    parser.add_argument(
        "--torch-adam",
        default="default",
        choices=["default", *IMPLEMENTATIONS],
        help="the reference's torch.optim.Adam implementation (default: torch's, a loop on CPU)",
    )


def reference_adam(params, lr: float, implementation: str) -> torch.optim.Adam:
    """The reference's ``torch.optim.Adam``; ``default`` leaves the choice to torch."""
    return torch.optim.Adam(params, lr=lr, **IMPLEMENTATIONS.get(implementation, {}))
