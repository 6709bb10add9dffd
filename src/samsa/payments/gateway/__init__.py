"""samsa.payments.gateway: a Stripe-like payment gateway over HTTP, with idempotency keys and
seeded fault injection, and its client. `python -m samsa.payments.gateway` runs one."""

from samsa.payments.gateway.client import GatewayClient, GatewayUnreachable, Response
from samsa.payments.gateway.faults import GatewayFault, GatewayFaults
from samsa.payments.gateway.keys import Charge, GatewayState
from samsa.payments.gateway.server import DECLINED_CARD, Gateway

__all__ = [
    "DECLINED_CARD",
    "Charge",
    "Gateway",
    "GatewayClient",
    "GatewayFault",
    "GatewayFaults",
    "GatewayState",
    "GatewayUnreachable",
    "Response",
]
