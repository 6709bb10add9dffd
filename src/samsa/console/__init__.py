"""`samsa console`: a web console that shows exactly-once at work in the log.

The partition view classifies each batch (plain, idempotent, transactional committed, aborted
or open, COMMIT/ABORT markers) from raw Fetch answers (`model`); the transactions, producers
and groups views come from the admin APIs (`views`), each request routed to the broker that
must answer it (`cluster`); one poller serves every browser (`live`); Starlette renders the
pages (`app`) and uvicorn serves them (`server`). `samsa console` is `cli`.
"""
