"""A data-parallel job for ``torchrun``, driven by tests/distributed/test_torchrun.py.

Each rank checks the collectives on values it knows the mean of, trains a small VAE on the
shipped digits through the Python API (:class:`~zoo.train.Trainer` with
:class:`~zoo.distributed.Collectives`), and writes its parameters and history to
``OUT/rank<r>.pt`` and ``OUT/rank<r>.json``, so that the test can compare the ranks.

    torchrun --standalone --nproc_per_node=2 tests/distributed/worker.py OUT SAMPLING
"""

import json
import signal
import sys
from pathlib import Path

import pyro
import torch

from zoo.data import load_dataset
from zoo.distributed import Collectives, join, leave, rank_seed, ranks_from_environment
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


def main(out: Path, sampling: str) -> None:
    ranks = ranks_from_environment()
    join(ranks, torch.device("cpu"))
    collectives = Collectives(ranks)
    r = ranks.rank
    # rank r sends r + 1 everywhere, loss 10 (r + 1) and, on the last rank, SIGTERM
    grads = [torch.full((3,), float(r + 1)), torch.full((2, 2), -float(r + 1))]
    last = ranks.world_size - 1
    loss, stop = collectives.average_gradients(
        grads, 10.0 * (r + 1), signal.SIGTERM if r == last else None
    )
    check = {
        "grads": [g.tolist() for g in grads],
        "loss": loss,
        "stop": stop,
        "gathered": collectives.gather_objects(r * 7, "a test"),
        "broadcast": collectives.broadcast_object(f"from rank {r}", "a test"),
    }

    pyro.set_rng_seed(0)
    data = load_dataset("digits")
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[16])
    trainer = Trainer(
        model,
        data,
        Adam({"lr": 1e-2}),
        TrainSettings(epochs=2, batch_size=64, progress=False, sampling=sampling),
        evaluate=lambda: model.evaluate(data, iw_samples=0),
        out_dir=out / "run" if ranks.is_main else None,
        collectives=collectives,
    )
    if not ranks.is_main:
        pyro.set_rng_seed(rank_seed(0, r))
    history = trainer.fit()
    torch.save(model.state_dict(), out / f"rank{r}.pt")
    (out / f"rank{r}.json").write_text(
        json.dumps({"check": check, "history": history, "steps": trainer.steps_per_epoch})
    )
    leave()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
