"""The payment system's records: orders, payment requests, results; topic names; the rules."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import asdict, dataclass
from typing import Any

ORDERS = "orders"
PAYMENTS = "payments"
RESULTS = "payment-results"

VALID_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"  # the gateway declines it (Stripe's test card)
INVALID_PROBABILITY = 0.02  # orders validation rejects (no charge, a "rejected" result)
DECLINED_PROBABILITY = 0.03  # orders the gateway declines (no charge, a "declined" result)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    idempotency_key: str
    customer: str
    amount: int  # cents
    currency: str
    card: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def decode(value: bytes) -> Order:
        return Order(**json.loads(value))

    def charge_params(self) -> dict[str, Any]:
        """What the payment consumer sends the gateway (the same on every retry)."""
        return {
            "amount": self.amount,
            "currency": self.currency,
            "card": self.card,
            "order_id": self.order_id,
        }


def rejection(order: Order) -> str | None:
    """Why validation rejects an order, or None."""
    if order.amount <= 0:
        return "amount must be positive"
    if not order.card.isdigit() or not 12 <= len(order.card) <= 19:
        return "malformed card number"
    return None


def expects_charge(order: Order) -> bool:
    return rejection(order) is None and order.card != DECLINED_CARD


def generate_orders(count: int, seed: int) -> list[Order]:
    """`count` orders, deterministic for a seed; a few invalid and a few declined."""
    rng = random.Random(seed)
    orders = []
    for i in range(count):
        draw = rng.random()
        card = VALID_CARD
        amount = rng.randint(100, 50_000)
        if draw < INVALID_PROBABILITY:
            amount = 0
        elif draw < INVALID_PROBABILITY + DECLINED_PROBABILITY:
            card = DECLINED_CARD
        orders.append(
            Order(
                order_id=f"ord_{i:06d}",
                idempotency_key="pay_" + uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                customer=f"cus_{rng.randint(1, 200):04d}",
                amount=amount,
                currency="usd",
                card=card,
            )
        )
    return orders


def result(order: Order, status: str, **extra: Any) -> bytes:
    """A `payment-results` record."""
    return json.dumps(
        {
            "order_id": order.order_id,
            "idempotency_key": order.idempotency_key,
            "status": status,
            **extra,
        },
        sort_keys=True,
    ).encode()
