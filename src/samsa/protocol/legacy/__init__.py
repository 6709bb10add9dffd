"""Classes for the request versions Kafka 4.0 removed (KIP-896) that clients still send.

kio, generated from Kafka 4's schemas, has no classes for them; `generate` writes them from
Kafka 3.9's schemas in kio's shape, so kio's readers and writers handle them and
`samsa.protocol.versions` converts them by field name like any other version.
`samsa.protocol.codec` looks in `index.INDEX` for what kio lacks.
"""
