"""Sans-IO Kafka protocol glue: framing, headers, the version table, kio codecs, record batches.

Nothing in this package touches sockets, files or the clock.
"""
