"""The simulated world drives requests through the server's durability driver: a SyncGroup
waits in its slot for the group record's fsync, and a failed fsync (`sync_all(failing=...)`)
reaches the request that waited for it."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.types import GroupId

from samsa.sim.clients import Call, batch, ms, produce_call
from samsa.sim.world import InFlight, World

GROUP = "g"
OFFSETS_TOPIC = "__consumer_offsets"


class Member:
    """A client that only records what it is told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.responses: list[Any] = []
        self.lost = 0

    def on_response(self, call: Call, response: Any) -> None:
        self.responses.append(response)

    def on_lost(self) -> None:
        self.lost += 1


def _join(member_id: str) -> Call:
    return Call(
        JoinGroupRequest(
            group_id=GroupId(GROUP),
            session_timeout=ms(10_000),
            rebalance_timeout=ms(10_000),
            member_id=member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=b"\x00\x00"),),
        )
    )


def _submit(world: World, member: Member, call: Call) -> InFlight:
    inflight = world.submit(member, call)
    assert inflight is not None, "the broker closed the connection"
    world.drive()
    return inflight


def _leader_syncs(world: World) -> InFlight:
    """Join a one-member group and send the leader's SyncGroup; it waits for the group record."""
    member = Member("member")
    first = _submit(world, member, _join(""))
    assert first.done and first.response.error_code == ErrorCode.member_id_required
    joined = _submit(world, member, _join(first.response.member_id))
    assert joined.done and joined.response.error_code == ErrorCode.none  # the slot, resolved
    member_id = joined.response.member_id
    sync = SyncGroupRequest(
        group_id=GroupId(GROUP),
        generation_id=joined.response.generation_id,
        member_id=member_id,
        group_instance_id=None,
        assignments=(SyncGroupRequestAssignment(member_id=member_id, assignment=b"mine"),),
    )
    synced = _submit(world, member, Call(sync))
    assert not synced.done, "SyncGroup answered before its group record was durable"
    return synced


def test_sync_group_waits_in_its_slot_for_the_fsync() -> None:
    world = World(0)
    synced = _leader_syncs(world)
    world.sync_all()
    assert synced.done
    assert (synced.response.error_code, synced.response.assignment) == (ErrorCode.none, b"mine")


def test_a_failed_fsync_of_the_group_record_fails_the_sync_group() -> None:
    world = World(0)
    synced = _leader_syncs(world)
    offsets_log = world.broker.topics.partition(OFFSETS_TOPIC, 0)
    assert offsets_log is not None
    world.sync_all(failing={offsets_log})
    assert synced.done
    assert synced.response.error_code == ErrorCode.rebalance_in_progress


def test_a_failed_fsync_reaches_the_produce_that_waited_for_it() -> None:
    world = World(0)
    log = world.broker.topics.partition("a", 0)
    other = world.broker.topics.partition("a", 1)
    assert log is not None and other is not None
    records = batch([b"value"], -1, -1, -1, False, world.now_ms)
    produced = _submit(world, Member("producer"), produce_call(None, "a", 0, records))
    assert not produced.done
    world.sync_all(failing={log, other})
    assert produced.done
    partition = produced.response.responses[0].partition_responses[0]
    assert partition.error_code == ErrorCode.kafka_storage_error
    assert log.sync_failed and log.high_watermark == 0


def test_a_seed_replays_the_random_ids_too() -> None:
    """Cluster, topic and member ids come from the world's seeded source, not uuid4: the
    same seed gives the same ids, another seed others."""
    first, again, other = World(5), World(5), World(6)
    ids = [
        (world.broker.cluster_id, [topic.topic_id for topic in world.broker.topics])
        for world in (first, again, other)
    ]
    assert ids[0] == ids[1] and ids[0] != ids[2]
    member = Member("member")
    joined = [_submit(world, member, _join("")).response.member_id for world in (first, again)]
    assert joined[0] == joined[1]
