"""Acceptance 1: the balances example as 3 worker processes, kill -9'd and restarted over and
over (by the harness at random moments, and by themselves right after outputs and changelog
are written but before the offsets are), against a samsa broker. exactly_once ends with
exactly the outputs and state of one failure-free pass; at_least_once, under the same faults,
does not."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypedDict

from . import support
from .support import Backend, WorkerProcess

SEED = 20261128
RECORDS = 8000
RATE_PER_S = 400.0
ACCOUNTS = 25
WORKERS = 3
KILL_EVERY_S = 3.0


class FaultRun(TypedDict):
    inputs: list[tuple[str, dict[str, int]]]
    harness_kills: int
    self_crashes: int
    starts: int
    codes: list[int]
    log_dir: str


def run_with_faults(
    backend: Backend,
    guarantee: str,
    seed: int,
    *,
    app: str = support.APP,
    group: str = support.GROUP,
    records: int = RECORDS,
    rate_per_s: float = RATE_PER_S,
    workers_n: int = WORKERS,
    kill_every_s: float = KILL_EVERY_S,
    timestamp: Callable[[int], int] | None = None,
    caught_up: Callable[[], bool] = lambda: True,
    state_dir: bool = False,
) -> FaultRun:
    """Run `app` (the balances example) as `workers_n` processes over `records` inputs while
    killing them; until the group `group` has committed all the input and `caught_up()`."""
    rng = random.Random(seed)
    print(f"seed {seed}, backend {backend.name}, guarantee {guarantee}, app {app}")
    inputs = support.make_inputs(records, ACCOUNTS, seed)
    backend.create_input()
    log_dir = support.temp_log_dir()
    workers = [
        WorkerProcess(backend, guarantee, str(i), True, log_dir, app=app, state_dir=state_dir)
        for i in range(workers_n)
    ]
    producer = support.InputProducer(backend.bootstrap, inputs, rate_per_s, timestamp)
    producer.start()
    time.sleep(0.5)  # the input topic exists before the workers subscribe (mock: auto-created)
    for worker in workers:
        worker.start(crash_at_commit=rng.randint(2, 6))
    next_kill = time.monotonic() + rng.uniform(0.5, 2 * kill_every_s)
    try:
        while producer.is_alive():
            for worker in workers:
                if not worker.alive():
                    worker.reap()
                    worker.start(crash_at_commit=rng.randint(2, 6))
            if time.monotonic() >= next_kill:
                rng.choice(workers).kill9()
                next_kill = time.monotonic() + rng.uniform(0.5, 2 * kill_every_s)
            time.sleep(0.05)
        producer.finish()
        support.wait_caught_up(backend, workers, timeout_s=90, group=group)
        deadline = time.monotonic() + 90
        while not caught_up():
            for worker in workers:
                if not worker.alive():
                    worker.reap()
                    worker.start()
            assert time.monotonic() < deadline, "\n".join(w.log_tail() for w in workers)
            time.sleep(0.5)
        codes = [w.terminate() for w in workers]
    finally:
        for worker in workers:
            worker.kill9()
    self_crashes = sum(e == -9 for w in workers for e in w.exits) - sum(w.kills for w in workers)
    stats: FaultRun = {
        "inputs": inputs,
        "harness_kills": sum(w.kills for w in workers),
        "self_crashes": self_crashes,
        "starts": sum(w.starts for w in workers),
        "codes": codes,
        "log_dir": log_dir,
    }
    print({k: v for k, v in stats.items() if k != "inputs"})
    return stats


def test_exactly_once_under_kill9_equals_a_failure_free_pass(samsa: Backend) -> None:
    stats = run_with_faults(samsa, "exactly_once", SEED)
    assert stats["codes"] == [0] * WORKERS, (
        f"clean SIGTERM exits expected; logs in {stats['log_dir']}"
    )
    assert stats["harness_kills"] + stats["self_crashes"] >= 5, stats
    want = support.expected_outputs(stats["inputs"])
    got = support.outputs_by_account(samsa.bootstrap, "read_committed")
    assert got == want, support.diff_summary(got, want)
    final = {account: seq[-1][1] for account, seq in want.items()}
    assert support.changelog_state(samsa.bootstrap, "read_committed") == final


def test_at_least_once_under_the_same_faults_applies_records_twice(samsa: Backend) -> None:
    stats = run_with_faults(samsa, "at_least_once", SEED)
    assert stats["self_crashes"] >= 3, stats  # each one repeats a whole commit interval
    want = support.expected_outputs(stats["inputs"])
    got = support.outputs_by_account(samsa.bootstrap, "read_committed")
    summary = support.diff_summary(got, want)
    print("at_least_once:", summary)
    got_ids = [i for seq in got.values() for i, _ in seq]
    assert len(got_ids) > len(set(got_ids)), f"expected duplicated outputs: {summary}"
    # Nothing is lost, but state was applied twice: the final balances are wrong somewhere.
    want_ids = {i for seq in want.values() for i, _ in seq}
    assert want_ids <= set(got_ids), summary
    final = {account: seq[-1][1] for account, seq in want.items()}
    assert support.changelog_state(samsa.bootstrap, "read_committed") != final
