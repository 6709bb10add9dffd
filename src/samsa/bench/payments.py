"""Payments per second through the whole pipeline: samsa's exactly-once payment consumer (dedup
store + gateway idempotency keys) against the naive at-least-once one, without faults.

    python -m samsa.bench.payments [--orders 2000] [--repeat 3] [--postgres URL] [--json]

Each run is `samsa.payments.scenario.run(mode, orders, seed, faults=False)`: an embedded broker
(behind the chaos proxy, passing everything), the HTTP gateway, two payment-consumer
subprocesses (one per partition of `payments`), SQLite files (or PostgreSQL). The figure is
orders / (time from the first checkout produce until every order has a `payment-results`
record), so it includes checkout, the transactional validation stage and the results topic;
both modes share all of that and differ only in the payment consumer.
"""

from __future__ import annotations

import json
import statistics

from samsa.effects.db import postgres_problem
from samsa.payments import scenario
from samsa.usage import ArgumentParser, positive_int


def main() -> None:
    parser = ArgumentParser(prog="python -m samsa.bench.payments")
    parser.add_argument("--orders", type=positive_int, default=2000)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=None, metavar="URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    problem = None if args.postgres is None else postgres_problem(args.postgres)
    if problem is not None:
        parser.error(f"--postgres {args.postgres}: {problem}")
    figures: dict[str, list[float]] = {mode: [] for mode in scenario.MODES}
    for _ in range(args.repeat):
        for mode in scenario.MODES:
            outcome = scenario.run(
                mode, args.orders, args.seed, faults=False, postgres=args.postgres
            )
            if not outcome.completed:
                raise SystemExit(f"{mode}: the pipeline did not finish")
            figures[mode].append(outcome.payments_per_s)
    medians = {mode: statistics.median(values) for mode, values in figures.items()}
    if args.json:
        print(json.dumps({"orders": args.orders, "runs": figures, "median": medians}))
        return
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.orders} orders, {args.repeat} runs each, {store}; payments/s end to end")
    for mode, values in figures.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {mode:<13} median {medians[mode]:7.1f}   (runs: {runs})")
    ratio = medians["exactly-once"] / medians["naive"]
    print(f"  exactly-once / naive: {ratio:.2f}")


if __name__ == "__main__":
    main()
