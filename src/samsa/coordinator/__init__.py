"""Coordinators: transactions (`txn`), consumer groups and their offsets (`group`), producer ids.

Each coordinator is a state machine that decides (`(state, request) -> (records, response)`);
`runtime.CoordinatorRuntime` is the one piece that appends those records, waits until they are
durable and replays them. Transactions and offsets change state only by that replay. Consumer
group membership, as in Kafka's classic groups (`replayRecords=false`), changes as it is
decided and writes its record for the next start, so a JoinGroup never waits for an fsync.
"""
