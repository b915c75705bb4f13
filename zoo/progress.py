"""Progress bars for long loops: training epochs and the final test evaluation.

A bar is drawn only on a terminal (a log file or a test's pipe gets none) and only when the
run's ``trainer.progress`` setting allows it.
"""

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True
) -> Iterable[T]:
    """``iterable``, with a bar that disappears when the loop ends."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=None if enabled else True,  # None: only on a terminal
        leave=False,
        dynamic_ncols=True,
    )
