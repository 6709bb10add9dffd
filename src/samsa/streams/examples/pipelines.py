"""Three applications over the balances example's input (`transactions`: key account id,
value {"id": n, "amount": +credit/-debit}), one per feature of issue 20; the fault tests
(tests/streams/test_pipeline_faults.py) kill -9 them as they do the balances example.

- `windowed`: per account, the sum and count of amounts in tumbling 1 s windows of the records'
  timestamps, 200 ms grace, every update: output `account-windows`; and the largest amount in
  hopping 2 s windows advancing by 1 s, only when each closes: output `account-max`.
- `regrouped`: re-keyed by region (`region-<account number mod 4>`) through a repartition
  topic, then a running total per region: output `region-totals`, {"id": n, "total": t}.
- `enriched`: each transaction joined with its account's owner from the table topic
  `accounts` (key account id, value {"owner": name}): output `owned-transactions`.

    samsa streams run samsa.streams.examples.pipelines:windowed --bootstrap-servers HOST:PORT

With SAMSA_STREAMS_CRASH_AT_COMMIT=K the process kills itself (SIGKILL) at its K-th commit,
after outputs and changelogs are written and before the offsets are.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from samsa.streams import App, KeyValueStore


def _app(name: str) -> App:
    app = App(
        name,
        bootstrap_servers=os.environ.get("SAMSA_STREAMS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        processing_guarantee=os.environ.get("SAMSA_STREAMS_PROCESSING_GUARANTEE", "exactly_once"),
        instance_id=os.environ.get("SAMSA_STREAMS_INSTANCE_ID"),
    )
    crash_at = int(os.environ.get("SAMSA_STREAMS_CRASH_AT_COMMIT", "0"))
    commits = [0]

    def crash_point() -> None:
        commits[0] += 1
        if commits[0] == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if crash_at > 0:
        app.before_offsets_commit(crash_point)
    return app


def add(total: dict[str, int], value: dict[str, Any]) -> dict[str, int]:
    return {"sum": total["sum"] + int(value["amount"]), "count": total["count"] + 1}


def running_total(region: str, value: dict[str, Any], store: KeyValueStore) -> list[Any]:
    total = int(store.get(region, 0)) + int(value["amount"])
    store.put(region, total)
    return [(region, {"id": value["id"], "total": total})]


def region(account: str, _value: Any) -> str:
    return f"region-{int(account.rsplit('-', 1)[-1]) % 4}"


def with_owner(value: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    return {**value, "owner": account["owner"]}


windowed = _app("windowed")
_amounts = windowed.stream(windowed.topic("transactions", key="str", value="json"))
(
    _amounts.window("sums", 1000, grace_ms=200)
    .aggregate({"sum": 0, "count": 0}, add)
    .to(windowed.topic("account-windows", key="str", value="json"))
)
(
    _amounts.map_values(lambda value: value["amount"])
    .window("maxima", 2000, advance_ms=1000, grace_ms=200, emit="final")
    .reduce(max)
    .to(windowed.topic("account-max", key="str", value="json"))
)

regrouped = _app("regrouped")
(
    regrouped.stream(regrouped.topic("transactions", key="str", value="json"))
    .group_by(region, "by-region", key="str")
    .process(running_total, regrouped.store("totals"))
    .to(regrouped.topic("region-totals", key="str", value="json"))
)

enriched = _app("enriched")
accounts = enriched.table(enriched.topic("accounts", key="str", value="json"))
(
    enriched.stream(enriched.topic("transactions", key="str", value="json"))
    .join(accounts, with_owner)
    .to(enriched.topic("owned-transactions", key="str", value="json"))
)
