"""Two brokers on one data dir: the second is refused before it touches anything.

Before the storage commit nothing stopped a second `samsa serve` (or an embedded broker) on a
dir a running broker used: it found no clean-shutdown marker, "recovered" the logs under the
first broker's feet, and from then on both appended to the same segment files, interleaving
batches with the same offsets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from samsa.log.storage import DataDirLocked
from samsa.testing import EmbeddedBroker
from samsa.testing.process import SAMSA, free_port
from samsa.testing.topics import create_topic

from .conftest import StartBroker
from .support import check_acknowledged, fingerprint, produce_acked, read_back, values

TOPIC = "owned"
PARTITIONS = 3
SETTINGS = {"num.partitions": str(PARTITIONS)}
SECOND_START_TIMEOUT_S = 20.0


def serve_again(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`samsa serve` on the same dir and another port; killed if it is still running (it
    started: the failure this test is about) after SECOND_START_TIMEOUT_S."""
    command = [SAMSA, "serve", "--data-dir", str(data_dir), "--port", str(free_port())]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=SECOND_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"a second broker is serving the same data dir:\n{stdout}{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_second_broker_on_a_held_data_dir_is_refused_and_changes_nothing(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    data_dir = tmp_path / "data"
    first = start_broker(data_dir, SETTINGS)
    assert first.process is not None
    create_topic(first.bootstrap, TOPIC, PARTITIONS)
    acknowledged = produce_acked(first.bootstrap, TOPIC, values(300, "first"), PARTITIONS)
    before = fingerprint(data_dir)

    # A second process: exit 2, one line on stderr naming the dir and the owner's pid.
    second = serve_again(data_dir)
    assert second.returncode == 2, (second.returncode, second.stdout, second.stderr)
    [line] = second.stderr.strip().splitlines()
    assert str(data_dir) in line and f"process {first.process.pid}" in line, line
    assert fingerprint(data_dir) == before, "the refused broker changed the data dir"

    # An embedded broker in this process is refused as well.
    embedded = EmbeddedBroker(data_dir=str(data_dir))
    with pytest.raises(RuntimeError) as raised:
        embedded.start()
    embedded.stop()
    assert isinstance(raised.value.__cause__, DataDirLocked), raised.value.__cause__
    assert raised.value.__cause__.holder_pid == first.process.pid
    assert fingerprint(data_dir) == before, "the refused embedded broker changed the data dir"

    # The owner is undisturbed; after it is killed the kernel drops its lock, and a new broker
    # takes the dir with every acknowledged record.
    acknowledged.update(produce_acked(first.bootstrap, TOPIC, values(300, "more"), PARTITIONS))
    first.kill9()
    successor = start_broker(data_dir, SETTINGS)
    check_acknowledged(read_back(successor.bootstrap, TOPIC, range(PARTITIONS)), acknowledged)
