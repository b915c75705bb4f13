"""Data-parallel SVI across processes with ``torch.distributed``, launched by ``torchrun``.

``torchrun --standalone --nproc_per_node=2 -m zoo model=vae`` starts two ranks, each a
``python -m zoo`` with the same overrides. Each rank holds a full copy of the model and guide
and draws its own minibatches; after each step's backward pass the ranks average their
gradients (and their losses) in one all-reduce, so every optimizer step is the same on every
rank and the parameters stay identical, bit for bit (the trainer checks this after each
epoch).

Why the estimate stays unbiased: a rank's loss is an ELBO estimate for the whole data set
with its data plate scaled by N / b (b: the rank's batch) and every global term (a prior,
the KL of a global latent, an annealed KL times beta) counted once, as in one process. The
mean over R ranks of R unbiased estimates is unbiased; it is the estimate of one process with
a batch of R * b, except that the global terms are drawn R times and averaged. So
``trainer.batch_size`` is per rank, the data plate's scale is N / b on each rank (nothing to
set), the KL weight beta is the schedule's on every rank, and R ranks with batch b train like
one with batch R * b. With ``trainer.sampling=permutation`` rank 0 draws the epoch's
permutation and sends it to the others, and rank r takes the r-th of each group of R
consecutive batches: within an epoch the ranks' batches are disjoint, and an epoch has
N // (R * b) steps. With ``replacement`` each rank draws from its own random stream.

Random streams: every rank seeds with ``seed`` for what must agree (the data, the model's
initial parameters, which rank 0 also broadcasts), then ranks other than 0 switch to a stream
of their own (:func:`rank_seed`) for training, so that their Monte Carlo draws are
independent; rank 0 keeps the stream of a one-process run. A checkpoint holds every rank's
random state, so a resume with the same world size continues exactly; another world size is
refused.

Rank 0 alone writes the run folder (checkpoints, metrics, figures, the summary, which records
``world_size``) and runs the final evaluation; the periodic evaluation also runs on rank 0,
and its numbers are sent to the others so that stopping rules decide alike. A signal to any
rank stops every rank after the same step (the signal travels in the all-reduce). A rank that
dies makes the others' next collective fail; they stop with a :class:`RankFailure` that
says so, and ``torchrun`` reports the failed rank.

Plain ``torch.distributed`` rather than ``DistributedDataParallel``: DDP hooks into
``nn.Module.forward``, while an SVI step calls the model and guide through Pyro's handlers,
several times per step with ``num_particles``, and a guide can hold parameters outside any
forward; one all-reduce of the flattened gradients after ``loss_and_grads`` is all SVI needs.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from zoo.errors import ZooError

# the variables torchrun sets for each rank
RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"
# the signals that stop training (zoo.train), in the order of precedence when ranks got several
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RankFailure(ZooError):
    """Another rank stopped (died, or failed with its own error) during a collective."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run: ``rank`` of ``world_size``."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and evaluates."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def ranks_from_environment(environ: dict | None = None) -> Ranks | None:
    """The ranks torchrun describes in ``environ`` (``os.environ``), or None for a plain
    one-process run (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``).

    :raises ZooError: naming the variable when one is not a valid integer.
    """
    environ = os.environ if environ is None else environ
    if WORLD_SIZE_ENV not in environ:
        return None
    values = {}
    for name in (RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV):
        text = environ.get(name, "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise ZooError(
                f"the environment variable {name} = {text!r} is not an integer; torchrun sets "
                "it for each rank: start data-parallel runs with torchrun"
            ) from None
    world, rank = values[WORLD_SIZE_ENV], values[RANK_ENV]
    if world < 1 or not 0 <= rank < world:
        raise ZooError(
            f"the environment says rank {rank} of {world} (RANK, WORLD_SIZE): the rank must be "
            "from 0 to WORLD_SIZE - 1; start data-parallel runs with torchrun"
        )
    if world == 1:
        return None
    return Ranks(rank, world, values[LOCAL_RANK_ENV])


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA tensors, ``gloo`` for CPU ones."""
    return "nccl" if device.type == "cuda" else "gloo"


def join(ranks: Ranks, device: torch.device, timeout_s: float = 1800.0) -> None:
    """Joins the process group torchrun set up (``MASTER_ADDR``/``MASTER_PORT``), once per
    process. ``timeout_s``: how long a collective waits for a rank that neither answers nor
    dies (a dead rank is noticed at once)."""
    if dist.is_initialized():
        return
    dist.init_process_group(
        backend_for(device),
        rank=ranks.rank,
        world_size=ranks.world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )


def leave() -> None:
    """Leaves the process group (at the end of a run); nothing if none was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s training stream: ``seed`` itself for rank 0 (a one-process
    run's stream), for the others a hash of both (NumPy, which Pyro also seeds, takes
    32 bits), so that the ranks' streams differ from each other and from other seeds' rank 0.
    """
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"zoo-rank-stream:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Collectives:
    """The trainer's collectives, each turning a lost rank into a :class:`RankFailure`.

    :param ranks: this process's place; the process group must be joined.
    :param device: where the gradients live (the buffer of the all-reduce is put there).
    """

    def __init__(self, ranks: Ranks, device: torch.device | str = "cpu") -> None:
        self.ranks = ranks
        self.device = torch.device(device)

    @contextmanager
    def _collective(self, doing: str) -> Iterator[None]:
        """Turns the error of a collective whose peer is gone into a :class:`RankFailure`."""
        try:
            yield
        except (RuntimeError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else "no message"
            raise RankFailure(
                f"{self.ranks}: another rank stopped while {doing} ({type(error).__name__}: "
                f"{first}); this rank stops too. torchrun's report names the rank that failed "
                "first; the checkpoint of the last completed epoch (rank 0's) is kept: resume "
                "with the same number of ranks."
            ) from error

    def average_gradients(
        self, grads: list[torch.Tensor], loss: float, stop: int | None
    ) -> tuple[float, int | None]:
        """Replaces each of ``grads`` by its mean over the ranks (one all-reduce of them
        flattened); returns the mean of the ranks' ``loss`` and the signal that stops training
        (``stop``: this rank's signal number or None), SIGTERM before SIGINT when the ranks
        got both, so that all ranks agree on both.

        The gradients must have the same shapes in the same order on every rank."""
        # float64: the losses are sums over the data set (1e5 and more) averaged over ranks
        flags = [float(stop == s) for s in STOP_SIGNALS]
        scalars = torch.tensor([loss, *flags], dtype=torch.float64, device=self.device)
        flat = torch.cat([g.reshape(-1) for g in grads]) if grads else None
        with self._collective("averaging the gradients"):
            if flat is not None:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            dist.all_reduce(scalars, op=dist.ReduceOp.SUM)
        if flat is not None:
            flat /= self.ranks.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        mean_loss, *counts = (scalars / self.ranks.world_size).tolist()
        stopping = [s for s, count in zip(STOP_SIGNALS, counts) if count > 0]
        return mean_loss, (stopping[0] if stopping else None)

    def broadcast_object(self, value: object, doing: str) -> object:
        """Rank 0's ``value`` on every rank (anything picklable)."""
        box = [value if self.ranks.is_main else None]
        with self._collective(doing):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, value: object, doing: str) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        values: list = [None] * self.ranks.world_size
        with self._collective(doing):
            dist.all_gather_object(values, value)
        return values

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor], doing: str) -> None:
        """Overwrites each tensor in place with rank 0's."""
        with self._collective(doing), torch.no_grad():
            for t in tensors:
                dist.broadcast(t, src=0)
