"""A creation the disk refuses partway leaves nothing behind: the data dir on a real tmpfs with
room for few files (inodes), a CreateTopics of more partitions than fit.

The partitions are made off the event loop and recorded on it (`AwaitWork`); this keeps the
rule the synchronous creation had: a creation that fails removes what it made, answers
KAFKA_STORAGE_ERROR, and the broker serves on. (The 4,996 orphan directories of the issue came
from running out of descriptors, which the descriptor cache now prevents:
`tests/broker/test_request_limits.py`.)
"""

from __future__ import annotations

import json
from pathlib import Path

from kio.schema.errors import ErrorCode

from protocol.wire import Conn, create_topics_request, fetch_request, make_batch, produce_request
from samsa.broker.topics import METADATA_FILE

from .conftest import StartBroker
from .support import TMPFS_BYTES, mount_tmpfs, unmount

# A partition takes a directory and four files (log, offset, time and transaction indexes).
INODES = 600
PARTITIONS = 500  # about 2,500 inodes: far more than there are


def test_a_creation_the_disk_refuses_partway_leaves_no_directory_behind(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    mount_point = tmp_path / "few-inodes"
    mount_tmpfs(mount_point, TMPFS_BYTES, inodes=INODES)
    try:
        data_dir = mount_point / "data"
        broker = start_broker(data_dir)
        with Conn(broker.bootstrap, timeout_s=60) as conn:
            response = conn.request(create_topics_request("wide", PARTITIONS))
            assert response.topics[0].error_code == ErrorCode.kafka_storage_error
            assert "No space left on device" in str(response.topics[0].error_message)
            assert not [name for name in data_dir.iterdir() if name.name.startswith("wide-")]
            assert "wide" not in json.loads((data_dir / METADATA_FILE).read_text())
            # The broker serves on, and the room the failed creation took is free again.
            created = conn.request(create_topics_request("small", 3))
            assert created.topics[0].error_code == ErrorCode.none
            stored = conn.request(produce_request("small", {2: make_batch([b"kept"])}))
            assert stored.responses[0].partition_responses[0].error_code == ErrorCode.none
        broker.kill9()
        broker.start()
        with Conn(broker.bootstrap) as conn:
            partition = conn.request(fetch_request("small", [2])).responses[0].partitions[0]
            assert partition.error_code == ErrorCode.none and partition.records
        broker.kill9()
    finally:
        unmount(mount_point)
