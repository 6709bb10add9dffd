"""Real clients through the chaos proxy to a real embedded broker."""

from __future__ import annotations

import time

import pytest

from samsa.chaos import EmbeddedChaosProxy, Fault
from samsa.protocol.apis import ApiKey
from samsa.testing import EmbeddedBroker

from .support import DELIVERY_TIMEOUT_S, RawClient, produce_one, producer, read_log

Chaos = tuple[EmbeddedBroker, EmbeddedChaosProxy]
PRODUCE = int(ApiKey.PRODUCE)
API_VERSIONS = int(ApiKey.API_VERSIONS)


def test_pass_through_produce_and_consume(chaos: Chaos) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap)
    values = [f"m{i}".encode() for i in range(20)]
    for value in values:
        produce_one(p, "plain", value)
    assert read_log(proxy.bootstrap, "plain") == values

    stats = proxy.stats()
    assert stats.faults_injected == 0
    assert stats.requests_forwarded[PRODUCE] == 20
    assert stats.responses_forwarded[PRODUCE] == 20
    assert stats.responses_forwarded[int(ApiKey.FETCH)] >= 1
    assert stats.connections_accepted >= 2
    assert (stats.frame_errors, stats.unmatched_responses, stats.upstream_connect_failures) == (
        0,
        0,
        0,
    )


@pytest.mark.parametrize("lost_acks", [1, 2])
def test_lost_produce_acknowledgment_makes_the_retry_a_duplicate(
    chaos: Chaos, lost_acks: int
) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap)
    produce_one(p, "lost-ack", b"before")
    proxy.drop_next_response(api_key=PRODUCE, count=lost_acks)
    produce_one(p, "lost-ack", b"retried")
    produce_one(p, "lost-ack", b"after")

    # The broker appended every attempt; the client saw one success.
    assert read_log(proxy.bootstrap, "lost-ack") == [
        b"before",
        *[b"retried"] * (lost_acks + 1),
        b"after",
    ]
    stats = proxy.stats()
    assert stats.dropped_responses == lost_acks
    assert (stats.cuts, stats.delays, stats.blackholes) == (0, 0, 0)
    assert stats.requests_forwarded[PRODUCE] == 3 + lost_acks
    assert stats.responses_forwarded[PRODUCE] == 3
    assert [event.fault for event in proxy.fault_log()] == [Fault.DROP_RESPONSE] * lost_acks
    assert {event.api_key for event in proxy.fault_log()} == {PRODUCE}


def test_cut_before_a_request_loses_it_before_the_broker_sees_it(chaos: Chaos) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap)
    produce_one(p, "cut-before", b"first")
    proxy.cut_next_request(api_key=PRODUCE, when="before")
    produce_one(p, "cut-before", b"second")

    assert read_log(proxy.bootstrap, "cut-before") == [b"first", b"second"]
    stats = proxy.stats()
    assert stats.cuts == 1
    assert stats.dropped_responses == 0
    assert stats.requests_forwarded[PRODUCE] == 2  # the cut request was never forwarded


def test_cut_after_a_request_forwards_it_first(chaos: Chaos) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap)
    produce_one(p, "cut-after", b"first")
    proxy.cut_next_request(api_key=PRODUCE, when="after")
    produce_one(p, "cut-after", b"second")

    stats = proxy.stats()
    assert stats.cuts == 1
    assert stats.requests_forwarded[PRODUCE] == 3  # first, the cut attempt, its retry
    assert stats.responses_forwarded[PRODUCE] == 2
    # Whether the broker appended the cut attempt before noticing the cut is a race.
    log = read_log(proxy.bootstrap, "cut-after")
    assert log[0] == b"first"
    assert log[1:] in ([b"second"], [b"second", b"second"])


def test_cut_all_resets_every_open_connection(chaos: Chaos) -> None:
    _, proxy = chaos
    clients = [RawClient(proxy.bootstrap) for _ in range(3)]
    try:
        for number, client in enumerate(clients):
            client.round_trip_s(number)  # the link to the broker is up
        assert proxy.connections == 3
        assert proxy.cut_all() == 3
        for number, client in enumerate(clients):
            with pytest.raises(ConnectionError):  # a reset: on send or on the next read
                client.send_api_versions(10 + number)
                client.receive_correlation_id(5.0)
        assert proxy.connections == 0
        assert proxy.stats().cuts == 3
        # New connections pass again.
        fresh = RawClient(proxy.bootstrap)
        assert fresh.round_trip_s(99) < 5.0
        fresh.close()
    finally:
        for client in clients:
            client.close()


def test_delay_holds_back_matching_responses_only(chaos: Chaos) -> None:
    _, proxy = chaos
    client = RawClient(proxy.bootstrap)
    try:
        assert client.round_trip_s(1) < 0.2
        proxy.delay(400, api_key=API_VERSIONS, count=2)
        assert client.round_trip_s(2) >= 0.4
        assert client.round_trip_s(3) >= 0.4
        assert client.round_trip_s(4) < 0.2  # the rule was spent
        proxy.delay(400, api_key=PRODUCE)  # another api: not this one
        assert client.round_trip_s(5) < 0.2
    finally:
        client.close()
    stats = proxy.stats()
    assert stats.delays == 2
    assert stats.delay_ms_total == 800


def test_delay_slows_a_real_producer_without_faults(chaos: Chaos) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap)
    produce_one(p, "slow", b"warm-up")
    proxy.delay(250, api_key=PRODUCE)
    started = time.monotonic()
    for value in (b"a", b"b", b"c"):
        produce_one(p, "slow", value)
    assert time.monotonic() - started >= 0.75
    proxy.clear()
    assert read_log(proxy.bootstrap, "slow") == [b"warm-up", b"a", b"b", b"c"]
    stats = proxy.stats()
    assert stats.delays == 3
    assert (stats.dropped_responses, stats.cuts) == (0, 0)


def test_blackhole_swallows_requests_until_it_ends(chaos: Chaos) -> None:
    _, proxy = chaos
    client = RawClient(proxy.bootstrap)
    try:
        client.round_trip_s(1)
        proxy.blackhole(0.6)
        client.send_api_versions(2)
        assert client.receive_correlation_id(0.9) is None  # nothing, and the window is over
        # The broker never saw request 2, so the next response answers request 3.
        client.send_api_versions(3)
        assert client.receive_correlation_id(5.0) == 3
    finally:
        client.close()
    stats = proxy.stats()
    assert stats.blackholes == 1
    assert stats.blackholed_requests == 1
    assert stats.blackholed_responses == 0
    assert stats.requests_forwarded[API_VERSIONS] == 2
    assert stats.responses_forwarded[API_VERSIONS] == 2


def test_blackhole_swallows_responses_too(chaos: Chaos) -> None:
    _, proxy = chaos
    client = RawClient(proxy.bootstrap)
    try:
        client.round_trip_s(1)
        proxy.delay(300, api_key=API_VERSIONS, count=1)
        client.send_api_versions(2)
        time.sleep(0.1)  # the broker has answered; the proxy is holding the answer
        proxy.blackhole(0.5)
        assert client.receive_correlation_id(0.8) is None
        client.send_api_versions(3)
        assert client.receive_correlation_id(5.0) == 3
    finally:
        client.close()
    stats = proxy.stats()
    assert stats.blackholes == 1
    assert stats.blackholed_responses == 1
    assert stats.blackholed_requests == 0
    assert stats.requests_forwarded[API_VERSIONS] == 3
    assert stats.responses_forwarded[API_VERSIONS] == 2


def test_one_way_blackhole_lets_the_broker_write_but_loses_the_acknowledgment(
    chaos: Chaos,
) -> None:
    _, proxy = chaos
    p = producer(
        proxy.bootstrap, retries=0, **{"request.timeout.ms": 500, "message.timeout.ms": 1000}
    )
    produce_one(p, "one-way", b"before")
    proxy.blackhole(5.0, forward_requests=True)
    reports: list[object] = []
    p.produce(
        "one-way", b"unacknowledged", partition=0, on_delivery=lambda e, _m: reports.append(e)
    )
    assert p.flush(DELIVERY_TIMEOUT_S) == 0
    assert len(reports) == 1 and reports[0] is not None, "the producer heard back"
    proxy.clear()
    # The request reached the broker, which wrote the record.
    assert read_log(proxy.bootstrap, "one-way") == [b"before", b"unacknowledged"]
    stats = proxy.stats()
    assert stats.blackholes == 1
    assert stats.blackholed_requests == 0
    assert stats.blackholed_responses >= 1


def test_a_producer_rides_out_a_blackhole(chaos: Chaos) -> None:
    _, proxy = chaos
    p = producer(proxy.bootstrap, **{"request.timeout.ms": 1000, "socket.timeout.ms": 1000})
    produce_one(p, "dark", b"before")
    proxy.blackhole(1.5)
    started = time.monotonic()
    produce_one(p, "dark", b"during")
    assert time.monotonic() - started >= 1.0
    assert read_log(proxy.bootstrap, "dark") == [b"before", b"during"]
    stats = proxy.stats()
    assert stats.blackholes == 1
    assert stats.blackholed_requests >= 1


def test_acks_zero_produce_is_not_waited_for(chaos: Chaos) -> None:
    _, proxy = chaos
    proxy.drop_next_response(api_key=PRODUCE)
    fire_and_forget = producer(proxy.bootstrap, acks=0)
    for value in (b"x", b"y"):
        fire_and_forget.produce("no-acks", value, partition=0)
        assert fire_and_forget.flush(10) == 0
    # No response comes for acks=0, so the rule is still waiting for a Produce that gets one.
    assert proxy.fault_log() == []
    produce_one(producer(proxy.bootstrap), "no-acks", b"z")
    assert read_log(proxy.bootstrap, "no-acks") == [b"x", b"y", b"z", b"z"]
    stats = proxy.stats()
    assert stats.dropped_responses == 1
    assert stats.unmatched_responses == 0
