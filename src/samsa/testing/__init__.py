"""Test tools that ship with samsa: an embedded broker, a pytest plugin built on it,
`samsa serve` as a subprocess to kill -9 and restart, one raw Kafka connection (`wire`),
secured brokers and their clients' settings (`security`), and the topic and offset helpers
every test and benchmark shares (`topics`)."""

from samsa.testing.embedded import EmbeddedBroker, embedded_broker
from samsa.testing.process import BrokerProcess
from samsa.testing.security import Acl, Security

__all__ = ["Acl", "BrokerProcess", "EmbeddedBroker", "Security", "embedded_broker"]
