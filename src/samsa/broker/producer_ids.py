"""InitProducerId for idempotent producers: a fresh producer id at epoch 0.

Without a transactional id Kafka always hands out a new id, whatever id and epoch a v3+ request
carries (librdkafka bumps an idempotent producer's epoch exactly this way, KIP-360).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from samsa.broker.outcomes import Outcome
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker


def handle_init_producer_id(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    if body.transactional_id is not None:
        # Transactions are not served yet: refuse clearly rather than half-work.
        return broker.reply(
            request,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.invalid_request,
                "producer_id": -1,
                "producer_epoch": -1,
            },
        )
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "error_code": ErrorCode.none,
            "producer_id": broker.producer_ids.next_id(),
            "producer_epoch": 0,
        },
    )
