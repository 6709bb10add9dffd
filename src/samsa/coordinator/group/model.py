"""A consumer group and its members, and the group record persisted after each rebalance."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from samsa.coordinator.group.states import GroupState
from samsa.durability import Slot

GROUP_TYPE = "classic"  # KIP-848: a group is "classic" or "consumer" (ListGroups v5)


@dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    last_heartbeat_ms: int = 0
    join_slot: Slot | None = None  # a JoinGroup waiting for the rebalance to complete
    sync_slot: Slot | None = None  # a SyncGroup waiting for the leader's assignment

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclass(slots=True)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    # Member ids handed out with MEMBER_ID_REQUIRED (KIP-394), until they expire: id -> deadline.
    pending_members: dict[str, int] = field(default_factory=dict)
    rebalance_deadline_ms: int = 0
    join_ready_ms: int = 0  # group.initial.rebalance.delay.ms for a group that was empty
    type: str = GROUP_TYPE

    def static_member(self, instance_id: str) -> Member | None:
        for member in self.members.values():
            if member.group_instance_id == instance_id:
                return member
        return None

    def encode(self) -> bytes:
        """The group record: what a restarted coordinator needs to fence older generations."""
        return json.dumps(
            {
                "generation_id": self.generation_id,
                "protocol_type": self.protocol_type,
                "protocol_name": self.protocol_name,
                "leader_id": self.leader_id,
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "session_timeout_ms": m.session_timeout_ms,
                        "rebalance_timeout_ms": m.rebalance_timeout_ms,
                        "protocol_type": m.protocol_type,
                        "protocols": [[n, base64.b64encode(md).decode()] for n, md in m.protocols],
                        "assignment": base64.b64encode(m.assignment).decode(),
                    }
                    for m in self.members.values()
                ],
            }
        ).encode()

    @classmethod
    def decode(cls, group_id: str, data: bytes, now_ms: int) -> Group:
        raw = json.loads(data)
        members = {
            m["member_id"]: Member(
                member_id=m["member_id"],
                group_instance_id=m["group_instance_id"],
                client_id=m["client_id"],
                client_host=m["client_host"],
                session_timeout_ms=m["session_timeout_ms"],
                rebalance_timeout_ms=m["rebalance_timeout_ms"],
                protocol_type=m["protocol_type"],
                protocols=[(n, base64.b64decode(md)) for n, md in m["protocols"]],
                assignment=base64.b64decode(m["assignment"]),
                last_heartbeat_ms=now_ms,
            )
            for m in raw["members"]
        }
        return cls(
            group_id,
            GroupState.STABLE if members else GroupState.EMPTY,
            raw["generation_id"],
            raw["protocol_type"],
            raw["protocol_name"],
            raw["leader_id"],
            members,
        )
