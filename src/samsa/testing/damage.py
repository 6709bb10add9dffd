"""Damage for storage tests: what a failing disk or a careless operator does to real files."""

from __future__ import annotations

import os

FLIP_MASK = 0x5A


def flip_byte(path: str | os.PathLike[str], position: int, mask: int = FLIP_MASK) -> None:
    """XOR the byte at `position` of the file at `path` with `mask`, in place."""
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ mask]))
