"""Coordinators: transactions (`txn`), consumer groups and their offsets (`group`), producer ids.

Each coordinator is a state machine that decides (`(state, request) -> (records, response)`)
and changes its state only by replaying its log's records; `runtime.CoordinatorRuntime` is the
one piece that appends those records, waits until they are durable and replays them.
"""
