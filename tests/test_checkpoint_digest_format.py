"""The checkpoint digest, recomputed by hand from the format its docstring describes.

Every checkpoint on disk carries this digest, so the bytes it is taken over are a file format:
a change of one tag (``"tensor"`` to ``"TENSOR"``) still gives a digest that the same code
checks, and passed every test before this one, but it makes every checkpoint written before the
change fail as corrupted on resume.
"""

import hashlib
import struct

import torch

from zoo.checkpoint import DIGEST_KEY, state_digest


def part(tag: str, payload: bytes) -> bytes:
    """A tagged, length-prefixed part, as the format defines it."""
    return f"{tag}:{len(payload)}:".encode() + payload


def test_the_digest_is_the_sha256_of_tagged_length_prefixed_parts():
    state = {
        "epoch": 3,
        "w": torch.tensor([1.0, -2.5]),
        "history": [{"loss": 0.5}],
        DIGEST_KEY: "left out",
    }
    by_hand = b"".join(
        [
            part("map", b"3"),
            part("str", b"'epoch'"),
            part("int", b"3"),
            part("str", b"'w'"),
            part("tensor", b"torch.float32(2,)"),
            part("bytes", struct.pack("<2f", 1.0, -2.5)),
            part("str", b"'history'"),
            part("seq", b"1"),
            part("map", b"1"),
            part("str", b"'loss'"),
            part("float", b"0.5"),
        ]
    )
    assert state_digest(state) == hashlib.sha256(by_hand).hexdigest()


def test_an_expanded_tensor_is_digested_by_its_values():
    # stride 0: the bytes are those of a fresh contiguous copy
    expanded = torch.tensor([7], dtype=torch.int16).expand(3)
    by_hand = part("map", b"1") + part("str", b"'x'") + part("tensor", b"torch.int16(3,)")
    by_hand += part("bytes", struct.pack("<3h", 7, 7, 7))
    assert state_digest({"x": expanded}) == hashlib.sha256(by_hand).hexdigest()
