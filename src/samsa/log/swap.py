"""The cleaner's files in a partition directory, and how opening a log finishes or discards
what a crash interrupted (Kafka's `.cleaned` / `.swap` recovery in `LogLoader`).

A cleaned segment is built beside the segments it replaces, as `<base>.log.cleaned` (and
`.index.cleaned`, `.timeindex.cleaned`, `.txnindex.cleaned`), and fsynced. The commit point is
one atomic write: the `cleaner-swap` manifest, naming the new segment's base and the bases it
replaces. Then the replaced segments other than `<base>` are deleted (their `.log` last), the
`.cleaned` files renamed over `<base>`'s (the `.log` last), and the manifest removed.

On opening: with a manifest, the swap is finished (whatever of it is left to do); without one,
every `.cleaned` file is an unfinished build and is deleted. So a crash at any moment leaves
the old segments or the new one, never a mix. Where samsa differs from Kafka: Kafka's commit
point is the rename of `.log.cleaned` to `.log.swap`; samsa's is the manifest, which also says
exactly which old segments go (Kafka infers them from the swap segment's offset range).

`cleaner-offset-checkpoint` holds the first dirty offset (everything below it was cleaned
once; Kafka keeps one such file per log dir) and, while a pass swaps, the offset it cleans to:
below that offset, gaps between segments are compaction's, not lost data.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

from samsa.log.segment import segment_name
from samsa.log.storage import Storage

log = logging.getLogger("samsa.log")

CLEANED_SUFFIX = ".cleaned"
SWAP_MANIFEST = "cleaner-swap"
CHECKPOINT_FILE = "cleaner-offset-checkpoint"
# The segment's files in the order a swap renames them: the log last, so its `.cleaned` file
# being gone means every rename is done.
FILE_SUFFIXES = (".index", ".timeindex", ".txnindex", ".log")


class CleanerFilesDamaged(OSError):
    """The swap manifest or the checkpoint cannot be read as samsa wrote them."""


def read_checkpoint(storage: Storage, directory: str) -> tuple[int, int]:
    """(first dirty offset, offset below which gaps are compaction's); (0, 0) if none."""
    raw = storage.read_all(os.path.join(directory, CHECKPOINT_FILE))
    if not raw:
        return 0, 0
    try:
        decoded = json.loads(raw)
        first_dirty = int(decoded["first_dirty"])
        return first_dirty, max(first_dirty, int(decoded.get("cleaning_to", 0)))
    except (ValueError, KeyError, TypeError) as exc:
        raise CleanerFilesDamaged(f"{directory}/{CHECKPOINT_FILE} is unreadable: {exc}") from None


def write_checkpoint(
    storage: Storage, directory: str, first_dirty: int, cleaning_to: int = 0
) -> None:
    body = {"first_dirty": first_dirty, "cleaning_to": max(cleaning_to, first_dirty)}
    storage.write_atomic(os.path.join(directory, CHECKPOINT_FILE), json.dumps(body).encode())


def write_manifest(storage: Storage, directory: str, base: int, replaces: list[int]) -> None:
    body = json.dumps({"base": base, "replaces": replaces}).encode()
    storage.write_atomic(os.path.join(directory, SWAP_MANIFEST), body)


def finish_swap(
    storage: Storage,
    directory: str,
    base: int,
    replaces: list[int],
    crash_point: Callable[[str], None] | None = None,
) -> None:
    """The steps after the commit point; each is idempotent, so recovery repeats them.
    `crash_point` is called after each (tests stop there as a crash would)."""
    prefix = os.path.join(directory, "")
    for old in replaces:
        if old == base:
            continue
        for suffix in FILE_SUFFIXES:
            storage.remove(prefix + segment_name(old) + suffix)
    if crash_point:
        crash_point("old-deleted")
    for suffix in FILE_SUFFIXES:
        cleaned = prefix + segment_name(base) + suffix + CLEANED_SUFFIX
        if storage.exists(cleaned):
            storage.rename(cleaned, prefix + segment_name(base) + suffix)
    storage.sync_dir(directory)
    if crash_point:
        crash_point("renamed")
    storage.remove(os.path.join(directory, SWAP_MANIFEST))
    storage.sync_dir(directory)


def discard_cleaned(storage: Storage, directory: str, names: list[str]) -> int:
    removed = 0
    for name in names:
        if name.endswith(CLEANED_SUFFIX):
            storage.remove(os.path.join(directory, name))
            removed += 1
    return removed


def recover(storage: Storage, directory: str) -> None:
    """Finish a committed swap, discard an uncommitted build (see the module docstring)."""
    raw = storage.read_all(os.path.join(directory, SWAP_MANIFEST))
    if raw:
        try:
            decoded = json.loads(raw)
            base, replaces = int(decoded["base"]), [int(b) for b in decoded["replaces"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CleanerFilesDamaged(f"{directory}/{SWAP_MANIFEST} is unreadable: {exc}") from None
        log.warning("%s: finishing the cleaner's interrupted swap of %s", directory, replaces)
        finish_swap(storage, directory, base, replaces)
    elif raw is not None:  # an empty manifest: write_atomic never leaves one; a torn copy
        storage.remove(os.path.join(directory, SWAP_MANIFEST))
    removed = discard_cleaned(storage, directory, storage.listdir(directory))
    if removed:
        log.warning("%s: removed %d file(s) of an unfinished cleaning", directory, removed)
