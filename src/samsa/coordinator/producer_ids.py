"""Producer ids handed out from durable blocks, never reused, also across restarts.

A block of `BLOCK_SIZE` ids is reserved by persisting its end *before* the first id of it is
handed out (Kafka's ProducerIdsBlock, 1000 ids a block). After a restart allocation resumes at
the persisted end, so ids of a partly used block are skipped rather than handed out twice.
"""

from __future__ import annotations

import json
import os

from samsa.log.storage import Storage

BLOCK_SIZE = 1000
FILE_NAME = "producer_ids.json"


class ProducerIdManager:
    def __init__(self, storage: Storage, data_dir: str) -> None:
        self._storage = storage
        self._path = os.path.join(data_dir, FILE_NAME)
        raw = storage.read_all(self._path)
        self._next = int(json.loads(raw)["next_block_start"]) if raw else 0
        self._block_end = self._next  # nothing reserved yet in this run

    def next_id(self) -> int:
        if self._next >= self._block_end:
            block_end = self._next + BLOCK_SIZE
            self._storage.write_atomic(
                self._path, json.dumps({"next_block_start": block_end}).encode()
            )
            self._block_end = block_end
        producer_id = self._next
        self._next += 1
        return producer_id
