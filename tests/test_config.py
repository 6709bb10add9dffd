"""Broker settings: every value checked with Kafka's type and range and refused with Kafka's
message (the setting, the value, what is allowed); Kafka's stock server.properties files load;
cluster-only settings are accepted and named; names Kafka lacks are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from samsa import config as broker_config
from samsa.config import NOT_APPLICABLE, SETTINGS, ConfigError, load
from samsa.configdef import INT_MAX, LONG_MAX, SHORT_MAX, AtLeast, Between, ConfigType, OneOf
from samsa.security import listeners

FIXTURES = Path(__file__).parent / "fixtures"
STOCK_FILES = ["kafka-3.9-kraft-server.properties", "kafka-4.0-server.properties"]
TYPE_MAX = {ConfigType.SHORT: SHORT_MAX, ConfigType.INT: INT_MAX, ConfigType.LONG: LONG_MAX}
# What a boundary value needs besides itself to pass the checks between settings.
ALONGSIDE = {"max.connections.per.ip": {"max.connections.per.ip.overrides": "127.0.0.1:1"}}


def refused(settings: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(settings)
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num.partitions", "0", "Invalid value 0 for configuration num.partitions: "),
        ("num.partitions", "-1", "Invalid value -1 for configuration num.partitions: "),
        ("message.max.bytes", "-1", "Invalid value -1 for configuration message.max.bytes: "),
        ("log.segment.bytes", "0", "Invalid value 0 for configuration log.segment.bytes: "),
    ],
)
def test_the_values_a_user_was_let_set_are_refused_as_kafka_refuses_them(
    name: str, value: str, message: str
) -> None:
    low = {"num.partitions": 1, "message.max.bytes": 0, "log.segment.bytes": 14}[name]
    assert refused({name: value}) == f"{message}Value must be at least {low}"


def _ranged() -> list[tuple[str, int, int | None]]:
    """(name, lowest valid, highest valid or None) of every numeric setting with a range."""
    found: list[tuple[str, int, int | None]] = []
    for name, key in [(n, s.key) for n, s in SETTINGS.items()] + list(NOT_APPLICABLE.items()):
        if isinstance(key.validator, AtLeast):
            found.append((name, key.validator.low, None))
        elif isinstance(key.validator, Between):
            found.append((name, key.validator.low, key.validator.high))
    return found


@pytest.mark.parametrize(("name", "low", "high"), _ranged())
def test_every_ranged_setting_takes_its_bounds_and_refuses_past_them(
    name: str, low: int, high: int | None
) -> None:
    alongside = ALONGSIDE.get(name, {})
    load({name: str(low), **alongside})
    assert refused({name: str(low - 1), **alongside}) == (
        f"Invalid value {low - 1} for configuration {name}: Value must be at least {low}"
    )
    if high is not None:
        load({name: str(high)})
        assert "Value must be no more than" in refused({name: str(high + 1)})


def _typed() -> list[tuple[str, ConfigType]]:
    keys = [(n, s.key) for n, s in SETTINGS.items()] + list(NOT_APPLICABLE.items())
    return [(name, key.type) for name, key in keys]


@pytest.mark.parametrize(("name", "kind"), _typed())
def test_every_setting_refuses_a_value_not_of_its_type(name: str, kind: ConfigType) -> None:
    if kind in TYPE_MAX:
        too_big = str(TYPE_MAX[kind] + 1)
        assert refused({name: too_big}) == (
            f"Invalid value {too_big} for configuration {name}: Not a number of type {kind.name}"
        )
        assert "Not a number" in refused({name: "12abc"})
    elif kind is ConfigType.BOOLEAN:
        assert refused({name: "yes"}) == (
            f"Invalid value yes for configuration {name}: Expected value to be either true or false"
        )
    else:
        key = SETTINGS[name].key if name in SETTINGS else NOT_APPLICABLE[name]
        if isinstance(key.validator, OneOf):
            assert f"for configuration {name}: String must be one of" in refused(
                {name: "no-such-value"}
            )


def test_a_negative_retention_is_unlimited_and_zero_is_refused() -> None:
    assert load({"log.retention.ms": "-5"}).log_retention_ms == -1
    assert "-1 (unlimited) or at least 1" in refused({"log.retention.hours": "0"})


def test_of_synonyms_the_most_precise_wins_in_any_order() -> None:
    hour_ms = 3600 * 1000
    assert load({"log.retention.ms": "5", "log.retention.hours": "2"}).log_retention_ms == 5
    assert load({"log.retention.hours": "2", "log.retention.minutes": "3"}).log_retention_ms == (
        180_000
    )
    assert load({"log.roll.hours": "2"}).log_roll_ms == 2 * hour_ms
    assert "differ" in refused({"node.id": "1", "broker.id": "2"})
    assert load({"broker.id": "7"}).node_id == 7


def test_names_kafka_does_not_have_are_refused() -> None:
    assert refused({"num.partition": "3"}) == "unknown broker setting 'num.partition'"


def test_one_data_dir() -> None:
    assert load({"log.dirs": "/srv/a"}).data_dir == "/srv/a"
    assert load({"log.dir": "/srv/b"}).data_dir == "/srv/b"
    assert load({"log.dir": "/srv/b", "log.dirs": "/srv/a"}).data_dir == "/srv/a"
    assert refused({"log.dirs": "/srv/a,/srv/b"}) == (
        "log.dirs=/srv/a,/srv/b: samsa keeps its data in one dir, 2 are given"
    )


@pytest.mark.parametrize("stock", STOCK_FILES)
def test_kafkas_stock_server_properties_loads(stock: str) -> None:
    settings = broker_config.parse_properties((FIXTURES / stock).read_text())
    config = load(settings)
    assert config.node_id == 1
    assert config.data_dir == "/tmp/kraft-combined-logs"
    # CONTROLLER is named by controller.listener.names: a controller's, not bound.
    specs = listeners.listener_specs(config, "127.0.0.1", 0)
    assert [(s.name, s.host, s.port) for s in specs] == [("PLAINTEXT", "", 9092)]
    assert listeners.advertised(config, specs[0], 9092) == ("localhost", 9092)
    ignored = broker_config.not_applicable(settings)
    assert {"process.roles", "inter.broker.listener.name", "num.network.threads"} <= set(ignored)
    assert {"offsets.topic.replication.factor", "transaction.state.log.min.isr"} <= set(ignored)
    assert not set(ignored) & set(SETTINGS)


def test_only_controller_listeners_is_no_broker() -> None:
    message = refused(
        {"listeners": "CONTROLLER://:9093", "controller.listener.names": "CONTROLLER"}
    )
    assert "no broker listener" in message


def test_a_properties_file_takes_colon_separators_and_comments() -> None:
    text = "# comment\n! also\nnum.partitions: 3\nlisteners=PLAINTEXT://:9092\n\n"
    assert broker_config.parse_properties(text) == {
        "num.partitions": "3",
        "listeners": "PLAINTEXT://:9092",
    }
    with pytest.raises(ConfigError, match="line 2: expected name=value"):
        broker_config.parse_properties("a=1\ngarbage\n")
