"""Test tools that ship with samsa: an embedded broker and a pytest plugin built on it."""

from samsa.testing.embedded import EmbeddedBroker, embedded_broker

__all__ = ["EmbeddedBroker", "embedded_broker"]
