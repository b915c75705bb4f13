"""The data-parallel parts of the trainer that need no second process: reading torchrun's
environment, the ranks' seeds, how an epoch's permutation is shared out, the batch size per
rank, and a one-rank process group, whose collectives must change nothing."""

import pyro
import pytest
import torch
import torch.distributed as dist

from zoo.data import load_dataset
from zoo.distributed import Collectives, Ranks, rank_seed, ranks_from_environment
from zoo.errors import CheckpointError, ZooError
from zoo.models import VAE
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings

SETTINGS = TrainSettings(epochs=2, batch_size=128, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_torchruns_environment_gives_the_rank_and_one_process_gives_none():
    assert ranks_from_environment({}) is None
    assert ranks_from_environment({"WORLD_SIZE": "1", "RANK": "0"}) is None
    ranks = ranks_from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert ranks == Ranks(3, 4, 1) and not ranks.is_main and str(ranks) == "rank 3 of 4"
    assert ranks_from_environment({"WORLD_SIZE": "2", "RANK": "0"}).is_main


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE = 'two'"),
        ({"WORLD_SIZE": "2", "RANK": ""}, "RANK = ''"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "rank 2 of 2"),
        ({"WORLD_SIZE": "0", "RANK": "0"}, "rank 0 of 0"),
    ],
)
def test_a_broken_environment_is_refused_naming_the_variable(environ, named):
    with pytest.raises(ZooError, match="torchrun") as refused:
        ranks_from_environment(environ)
    assert named in str(refused.value)


def test_rank_0_keeps_the_seed_and_every_other_rank_gets_a_stream_of_its_own():
    assert rank_seed(123, 0) == 123
    seeds = {rank_seed(seed, rank) for seed in range(20) for rank in range(1, 9)}
    assert len(seeds) == 20 * 8
    assert seeds.isdisjoint(range(20))  # no rank's stream is another seed's rank 0
    assert all(0 <= s < 2**32 for s in seeds)  # NumPy's range, which Pyro seeds too
    assert rank_seed(5, 3) == rank_seed(5, 3)


class SharesNothing:
    """Collectives for one rank of several in this process: a broadcast keeps this rank's
    tensor, as if it were rank 0's."""

    def __init__(self, ranks):
        self.ranks = ranks

    def broadcast_tensors(self, tensors, doing):
        pass


def test_the_ranks_take_disjoint_batches_that_cover_the_epoch_in_order():
    order = torch.randperm(50)
    trainer = Trainer.__new__(Trainer)
    shares = []
    for rank in range(3):
        trainer.collectives = SharesNothing(Ranks(rank, 3))
        trainer.ranks, trainer.world_size = trainer.collectives.ranks, 3
        shares.append(trainer._share_of(order, steps=4, b=4))  # 50 // (3 * 4) = 4 steps
    assert all(s.shape == (4, 4) for s in shares)
    # step k: rank r takes the r-th of the k-th group of three batches
    interleaved = torch.stack(shares, dim=1).reshape(-1)
    assert torch.equal(interleaved, order[:48])
    trainer.collectives, trainer.ranks, trainer.world_size = None, None, 1
    assert torch.equal(trainer._share_of(order, steps=12, b=4).reshape(-1), order[:48])


def test_the_batch_size_is_per_rank_and_null_shares_the_rows_out(digits):
    pyro.set_rng_seed(0)
    model = VAE(digits.num_features, latent_dim=2, hidden_dims=[8])

    def trainer(batch_size, ranks):
        settings = TrainSettings(epochs=1, batch_size=batch_size, progress=False)
        stub = SharesNothing(ranks)
        stub.gather_objects = lambda value, doing: [value] * ranks.world_size
        return Trainer(model, digits, Adam({"lr": 1e-3}), settings, collectives=stub)

    with pytest.raises(ValueError) as refused:
        trainer(800, Ranks(0, 2))
    assert str(refused.value) == (
        "trainer.batch_size = 800 is not valid on each of 2 ranks (1600 rows a step): it "
        "exceeds the 1437 training rows of digits; it must be an integer from 1 to 718."
    )
    full = trainer(None, Ranks(1, 3))
    assert (full.batch_size, full.steps_per_epoch) == (1437 // 3, 1)
    assert trainer(100, Ranks(0, 2)).steps_per_epoch == 1437 // 200


@pytest.fixture
def one_rank_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield Collectives(Ranks(0, 1))
    dist.destroy_process_group()


def make_trainer(data, out_dir, collectives=None, epochs=2):
    pyro.set_rng_seed(0)
    model = VAE(data.num_features, latent_dim=2, hidden_dims=[16])
    return Trainer(
        model,
        data,
        Adam({"lr": 1e-2}),
        TrainSettings(epochs=epochs, batch_size=128, progress=False),
        evaluate=lambda: model.evaluate(data, iw_samples=0),
        out_dir=out_dir,
        identity={"model": "vae", "config": "test"},
        collectives=collectives,
    )


def test_one_rank_of_a_process_group_trains_exactly_as_one_process(
    digits, tmp_path, one_rank_group
):
    """Every collective runs (the all-reduce, the broadcasts, the gathers) and must be the
    identity: the same losses, evaluations and parameters, bit for bit."""
    alone = make_trainer(digits, tmp_path / "alone")
    # a process group's trainer creates the guide's parameters before its first step, to send
    # rank 0's to the others; the amortized guide's prototype run then draws off the random
    # stream (forked), where the first step's would have drawn on it: do the same here
    alone._register_params()
    alone_history = alone.fit()
    grouped = make_trainer(digits, tmp_path / "grouped", one_rank_group)
    grouped_history = grouped.fit()
    untimed = [[{k: v for k, v in h.items() if not k.startswith("time/")} for h in hs]
               for hs in (alone_history, grouped_history)]  # fmt: skip
    assert untimed[0] == untimed[1]
    a, b = alone.model.state_dict(), grouped.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = grouped.state()
    assert state["world_size"] == 1 and len(state["rng_ranks"]) == 1
    assert torch.equal(state["rng_ranks"][0]["torch"], state["rng"]["torch"])
    assert "world_size" not in alone.state()  # one process: the checkpoint format of before


def test_a_checkpoint_of_two_ranks_is_refused_by_one_process_naming_both_counts(
    digits, tmp_path, one_rank_group
):
    made = make_trainer(digits, tmp_path / "run", epochs=1)
    made.fit()
    from zoo.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    save_checkpoint({**state, "world_size": 2, "rng_ranks": [state["rng"]] * 2}, path)
    again = make_trainer(digits, tmp_path / "run", epochs=2)
    with pytest.raises(CheckpointError, match="made by 2 rank"):
        again.resume()
    grouped = make_trainer(digits, tmp_path / "run", one_rank_group, epochs=2)
    with pytest.raises(CheckpointError) as refused:
        grouped.resume()
    assert "this run has 1: a run resumes with the number of ranks it was started with" in str(
        refused.value
    )
