"""The seeded schedule and the injector: pure, so checked without sockets, then end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samsa.chaos import Decision, Fault, Schedule, proxied_broker
from samsa.chaos.faults import Injector
from samsa.chaos.wire import RequestInfo
from samsa.protocol.apis import ApiKey

from .support import produce_one, producer, read_log

PRODUCE = int(ApiKey.PRODUCE)
FETCH = int(ApiKey.FETCH)
METADATA = int(ApiKey.METADATA)


def _mixed(seed: int, api_keys: list[int]) -> list[Decision]:
    schedule = Schedule(
        seed,
        drop_response_probability=0.2,
        cut_probability=0.2,
        delay_ms_range=(5, 50),
        delay_probability=0.5,
    )
    return [schedule.decide(key) for key in api_keys]


@given(seed=st.integers(0, 2**32), api_keys=st.lists(st.sampled_from([0, 1, 3]), max_size=50))
def test_same_seed_and_requests_give_the_same_decisions(seed: int, api_keys: list[int]) -> None:
    assert _mixed(seed, api_keys) == _mixed(seed, api_keys)


def test_different_seeds_give_different_decisions() -> None:
    requests = [PRODUCE] * 200
    assert _mixed(1, requests) != _mixed(2, requests)


def test_untargeted_requests_do_not_shift_the_decisions() -> None:
    def produce_decisions(api_keys: list[int]) -> list[Decision]:
        schedule = Schedule(9, drop_response_probability=0.5, api_keys=[PRODUCE])
        decisions = [(key, schedule.decide(key)) for key in api_keys]
        assert all(d.fault is Fault.PASS for key, d in decisions if key != PRODUCE)
        return [d for key, d in decisions if key == PRODUCE]

    plain = produce_decisions([PRODUCE] * 100)
    interleaved = produce_decisions([METADATA, PRODUCE, FETCH, FETCH] * 100)
    assert plain == interleaved[:100]


def test_decisions_follow_the_probabilities() -> None:
    schedule = Schedule(
        3,
        drop_response_probability=0.3,
        cut_probability=0.5,
        delay_ms_range=(10, 20),
    )
    decisions = [schedule.decide(PRODUCE) for _ in range(4000)]
    counts = {fault: sum(d.fault is fault for d in decisions) for fault in Fault}
    # drop 0.3; cut 0.7 * 0.5 = 0.35, split evenly; delay the remaining 0.35; never pass.
    assert 1100 < counts[Fault.DROP_RESPONSE] < 1300
    assert 600 < counts[Fault.CUT_BEFORE] < 800
    assert 600 < counts[Fault.CUT_AFTER] < 800
    assert 1300 < counts[Fault.DELAY] < 1500
    assert counts[Fault.PASS] == 0
    delays = {d.delay_ms for d in decisions if d.fault is Fault.DELAY}
    assert delays == set(range(10, 21))
    quiet = Schedule(3)
    assert {quiet.decide(PRODUCE) for _ in range(100)} == {Decision(Fault.PASS)}


@pytest.mark.parametrize(
    "arguments",
    [
        {"drop_response_probability": 1.5},
        {"cut_probability": -0.1},
        {"delay_probability": 2.0},
        {"delay_ms_range": (10, 5)},
        {"delay_ms_range": (-1, 5)},
    ],
)
def test_schedule_rejects_nonsense(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Schedule(0, **arguments)  # type: ignore[arg-type]


def _request(api_key: int, correlation_id: int = 0, expects_response: bool = True) -> RequestInfo:
    return RequestInfo(api_key, 0, correlation_id, expects_response)


def test_rules_are_spent_in_order_and_only_on_matching_apis() -> None:
    injector = Injector()
    injector.add_rule(Decision(Fault.DROP_RESPONSE), PRODUCE, 2)
    injector.add_rule(Decision(Fault.DELAY, 30), None, 1)
    faults = [
        injector.decide(_request(key)).fault for key in (FETCH, PRODUCE, FETCH, PRODUCE, PRODUCE)
    ]
    assert faults == [Fault.DELAY, Fault.DROP_RESPONSE, Fault.PASS, Fault.DROP_RESPONSE, Fault.PASS]
    assert injector.pending_rules == 0
    assert [(e.sequence, e.fault) for e in injector.fault_log] == [
        (0, Fault.DELAY),
        (1, Fault.DROP_RESPONSE),
        (3, Fault.DROP_RESPONSE),
    ]


def test_a_rule_does_not_shift_the_schedule() -> None:
    def decisions(with_rule: bool) -> list[Decision]:
        injector = Injector(Schedule(5, drop_response_probability=0.5))
        if with_rule:
            injector.add_rule(Decision(Fault.CUT_BEFORE), PRODUCE, 3)
        return [injector.decide(_request(PRODUCE)) for _ in range(50)]

    assert decisions(True)[3:] == decisions(False)[3:]
    assert {d.fault for d in decisions(True)[:3]} == {Fault.CUT_BEFORE}


def test_response_faults_wait_for_a_request_that_gets_a_response() -> None:
    injector = Injector()
    injector.add_rule(Decision(Fault.DROP_RESPONSE), PRODUCE, 1)
    assert injector.decide(_request(PRODUCE, expects_response=False)).fault is Fault.PASS
    assert injector.decide(_request(PRODUCE)).fault is Fault.DROP_RESPONSE


def test_blackhole_window_and_clear() -> None:
    injector = Injector()
    injector.start_blackhole(now_ms=1000, duration_ms=500)
    assert not injector.blackholed(999)
    assert injector.blackholed(1000)
    assert injector.blackholed(1499)
    assert not injector.blackholed(1500)
    injector.start_blackhole(now_ms=2000, duration_ms=500)
    injector.add_rule(Decision(Fault.CUT_AFTER), None, None)
    injector.clear()
    assert not injector.blackholed(2100)
    assert injector.decide(_request(PRODUCE)).fault is Fault.PASS


def test_one_way_blackhole_lets_requests_through() -> None:
    injector = Injector()
    injector.start_blackhole(now_ms=1000, duration_ms=500, requests=False)
    assert injector.blackholed(1200)
    assert not injector.blackholed(1200, request=True)
    injector.start_blackhole(now_ms=1000, duration_ms=500)
    assert injector.blackholed(1200, request=True)


def _predicted_log(seed: int, values: list[bytes]) -> list[bytes]:
    """What a non-idempotent producer leaves in the log, sending `values` one at a time,
    when a Produce whose response the schedule drops is retried (and appended again)."""
    schedule = Schedule(seed, drop_response_probability=0.4, api_keys=[PRODUCE])
    log: list[bytes] = []
    for value in values:
        log.append(value)
        while schedule.decide(PRODUCE).fault is Fault.DROP_RESPONSE:
            log.append(value)
    return log


@pytest.mark.parametrize("seed", [11, 12])
def test_the_seeded_schedule_decides_what_the_log_holds(tmp_path: Path, seed: int) -> None:
    values = [f"v{i}".encode() for i in range(6)]
    expected = _predicted_log(seed, values)
    assert _predicted_log(11, values) != _predicted_log(12, values)  # the seeds matter
    assert len(expected) > len(values)  # faults happened

    schedule = Schedule(seed, drop_response_probability=0.4, api_keys=[PRODUCE])
    with proxied_broker(str(tmp_path / "data"), schedule=schedule) as (_, proxy):
        p = producer(proxy.bootstrap)
        for value in values:
            produce_one(p, "seeded", value)
        proxy.set_schedule(None)  # read back without faults
        assert read_log(proxy.bootstrap, "seeded") == expected
        stats = proxy.stats()
    assert stats.dropped_responses == len(expected) - len(values)
    assert stats.requests_forwarded[PRODUCE] == len(expected)
