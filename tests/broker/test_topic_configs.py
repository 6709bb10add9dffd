"""Kafka's config checks, directly: `samsa.configdef` and the topic config table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samsa import config as broker_config
from samsa.broker import topic_configs
from samsa.broker.core import Broker, Endpoint
from samsa.broker.dynamic import BROKER_KEYS, DYNAMIC_CONFIGS_FILE
from samsa.broker.topic_configs import TOPIC_CONFIGS, InvalidConfig, check
from samsa.broker.topics import DataDirError
from samsa.configdef import BadValue, ConfigType, parse
from samsa.log.storage import OsStorage


def test_every_default_passes_its_own_check() -> None:
    for name, spec in TOPIC_CONFIGS.items():
        spec.key.check(spec.key.default)
        assert spec.key.name == name
    for key in BROKER_KEYS.values():
        key.check(key.default)


def test_the_configs_kafka_39_defines() -> None:
    assert len(TOPIC_CONFIGS) == 36
    assert set(TOPIC_CONFIGS) >= topic_configs.ACTING
    # log.message.format.version is not dynamic in Kafka; samsa's flush settings are static.
    assert "log.message.format.version" not in BROKER_KEYS
    assert "log.flush.interval.messages" not in BROKER_KEYS
    assert "log.retention.ms" in BROKER_KEYS


@pytest.mark.parametrize(
    ("value", "kind", "parsed"),
    [
        (" 12 ", ConfigType.INT, 12),
        ("+7", ConfigType.LONG, 7),
        ("TRUE", ConfigType.BOOLEAN, True),
        (" false", ConfigType.BOOLEAN, False),
        ("0.5", ConfigType.DOUBLE, 0.5),
        ("1e-3", ConfigType.DOUBLE, 0.001),
        ("", ConfigType.LIST, []),
        ("compact , delete", ConfigType.LIST, ["compact", "delete"]),
        (" lz4 ", ConfigType.STRING, "lz4"),
        ("32767", ConfigType.SHORT, 32767),
    ],
)
def test_parse_as_kafka(value: str, kind: ConfigType, parsed: object) -> None:
    assert parse("x", value, kind) == parsed


@pytest.mark.parametrize(
    ("value", "kind", "why"),
    [
        ("1.0", ConfigType.INT, "Not a number of type INT"),
        ("9223372036854775808", ConfigType.LONG, "Not a number of type LONG"),
        ("32768", ConfigType.SHORT, "Not a number of type SHORT"),
        ("1_000", ConfigType.LONG, "Not a number of type LONG"),
        ("yes", ConfigType.BOOLEAN, "Expected value to be either true or false"),
        ("half", ConfigType.DOUBLE, "Not a number of type DOUBLE"),
    ],
)
def test_parse_refuses_as_kafka(value: str, kind: ConfigType, why: str) -> None:
    with pytest.raises(BadValue) as refused:
        parse("x", value, kind)
    assert str(refused.value) == f"Invalid value {value} for configuration x: {why}"


@pytest.mark.parametrize(
    "version", ["0.8.0", "0.10.0-IV1", "0.11.0-IV2", "1.0", "2.8-IV1", "3.7-IV4", "3.9.1"]
)
def test_message_format_versions(version: str) -> None:
    check({"message.format.version": version})


@pytest.mark.parametrize("version", ["0.8.0-IV0", "3.7-IV5", "4.0", "3", "x", ""])
def test_message_format_versions_refused(version: str) -> None:
    with pytest.raises(InvalidConfig, match="is not a valid version"):
        check({"message.format.version": version})


def test_nulls_and_names() -> None:
    with pytest.raises(InvalidConfig) as refused:
        check({"a": None, "retention.ms": "1", "b": None})
    assert str(refused.value) == "Null value not supported for topic configs: a,b"
    with pytest.raises(InvalidConfig) as refused:
        check({"log.retention.ms": "1"})
    assert str(refused.value) == "Unknown topic config name: log.retention.ms"
    assert check({"retention.ms": " 5 "}) == {"retention.ms": " 5 "}


@pytest.mark.parametrize(
    "saved", ["{not json", '["a list"]', '{"broker": {"message.max.bytes": "many"}}']
)
def test_a_damaged_broker_configs_file_refuses_the_start(tmp_path: Path, saved: str) -> None:
    data_dir = str(tmp_path)
    _open(data_dir).close()
    with open(os.path.join(data_dir, DYNAMIC_CONFIGS_FILE), "w") as f:
        f.write(saved)
    with pytest.raises(DataDirError, match=r"broker-configs\.json cannot be used"):
        _open(data_dir)
    os.remove(os.path.join(data_dir, DYNAMIC_CONFIGS_FILE))
    _open(data_dir).close()


def _open(data_dir: str) -> Broker:
    broker = Broker(broker_config.load({}), OsStorage(), data_dir, lambda: 0, Endpoint("x", 1))
    broker.open()
    return broker


def test_the_coordinators_logs_keep_everything_whatever_the_broker_retention(
    tmp_path: Path,
) -> None:
    """Before: a dynamic (or static) log.retention.bytes reached __consumer_offsets and
    __transaction_state, which set only retention.ms: their state would be trimmed away."""
    broker = _open(str(tmp_path))
    try:
        config = broker.dynamic.check({"log.retention.bytes": "1"}, per_broker=True)
        broker.dynamic.per_broker["log.retention.bytes"] = "1"
        broker.apply_config(config)
        for name in ("__consumer_offsets", "__transaction_state"):
            internal = broker.topics.partition(name, 0)
            assert internal is not None
            assert (internal.config.retention_ms, internal.config.retention_bytes) == (-1, -1)
        broker.topics.create("user", 1, {}, 0)
        user = broker.topics.partition("user", 0)
        assert user is not None and user.config.retention_bytes == 1
    finally:
        broker.close()
