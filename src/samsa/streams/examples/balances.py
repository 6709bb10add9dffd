"""Per-account running balances from a stream of debits and credits.

Input `transactions`: key = account id (str), value = {"id": n, "amount": +credit/-debit}.
Output `balances`: key = account id, value = {"id": n, "balance": balance after record n}.
State: store `balances` (account -> balance), changelog `balances-balances-changelog`.

    samsa streams run samsa.streams.examples.balances:app --bootstrap-servers HOST:PORT
    python -m samsa.streams.examples.balances            # SAMSA_STREAMS_* from the environment
    samsa streams run samsa.streams.examples.balances:app --on-error skip   # past bad records

Fault injection for tests: with BALANCES_CRASH_AT_COMMIT=K the process kills itself (SIGKILL)
at its K-th commit, after the outputs and changelog are written and before the offsets are:
at_least_once then applies the uncommitted records twice; exactly_once aborts them.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from samsa.streams import App, KeyValueStore

app = App(
    "balances",
    bootstrap_servers=os.environ.get("SAMSA_STREAMS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    processing_guarantee=os.environ.get("SAMSA_STREAMS_PROCESSING_GUARANTEE", "exactly_once"),
    instance_id=os.environ.get("SAMSA_STREAMS_INSTANCE_ID"),
    # A malformed input record: "fail" (stop, naming it), "skip" or "dead_letter"
    # (to balances-dlq); `samsa streams run ... --on-error` overrides it.
    on_error=os.environ.get("SAMSA_STREAMS_ON_ERROR", "fail"),
)
transactions = app.topic("transactions", key="str", value="json")
balances = app.topic("balances", key="str", value="json")
store = app.store("balances", key="str", value="json")


def valid(account: Any, value: Any) -> bool:
    return isinstance(account, str) and isinstance(value, dict) and "amount" in value


def apply(account: str, value: dict[str, Any], state: KeyValueStore) -> list[tuple[Any, Any]]:
    balance = int(state.get(account, 0)) + int(value["amount"])
    state.put(account, balance)
    return [(account, {"id": value["id"], "balance": balance})]


app.stream(transactions).filter(valid).process(apply, store).to(balances)

_crash_at = int(os.environ.get("BALANCES_CRASH_AT_COMMIT", "0"))
_commits = 0


def _crash_point() -> None:
    global _commits
    _commits += 1
    if _commits == _crash_at:
        os.kill(os.getpid(), signal.SIGKILL)


if _crash_at > 0:
    app.before_offsets_commit(_crash_point)


if __name__ == "__main__":
    sys.exit(app.run())
