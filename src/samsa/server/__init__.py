"""The only asyncio code in samsa: listener, connections, group commit, long polls, timers."""

from samsa.server.server import BrokerServer

__all__ = ["BrokerServer"]
