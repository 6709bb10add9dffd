"""Dynamic group configs (KIP-848; Kafka 4.0's `GroupConfig`): IncrementalAlterConfigs and
AlterConfigs on a GROUP resource set a consumer group's session timeout and heartbeat interval
over the broker's `group.consumer.*` defaults. Kept in `group-configs.json` in the data dir
(written whole and atomically before the answer) and handed to the consumer group coordinator,
which uses them at the next heartbeat and session check. A group need not exist to be given
configs, as in Kafka."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from samsa.broker.topics import DataDirError
from samsa.configdef import BadValue, ConfigKey, ConfigType, between
from samsa.coordinator.group.consumer_machine import (
    HEARTBEAT_INTERVAL_CONFIG,
    SESSION_TIMEOUT_CONFIG,
)
from samsa.log.storage import Storage

GROUP_CONFIGS_FILE = "group-configs.json"

# Kafka bounds each by the broker's group.consumer.{min,max}.* settings, whose defaults these are.
SESSION_TIMEOUT_MS_RANGE = (45_000, 60_000)
HEARTBEAT_INTERVAL_MS_RANGE = (5_000, 15_000)

GROUP_KEYS: dict[str, ConfigKey] = {
    SESSION_TIMEOUT_CONFIG: ConfigKey(
        SESSION_TIMEOUT_CONFIG,
        ConfigType.INT,
        "",
        "The timeout to detect client failures when using the consumer group protocol.",
        between(*SESSION_TIMEOUT_MS_RANGE),
    ),
    HEARTBEAT_INTERVAL_CONFIG: ConfigKey(
        HEARTBEAT_INTERVAL_CONFIG,
        ConfigType.INT,
        "",
        "The heartbeat interval given to the members of a consumer group.",
        between(*HEARTBEAT_INTERVAL_MS_RANGE),
    ),
}


class InvalidGroupConfig(ValueError):
    """A group config Kafka refuses with INVALID_CONFIG; the message is Kafka's."""


def check(configs: Mapping[str, str]) -> dict[str, int]:
    """`configs` parsed; `InvalidGroupConfig` for an unknown name or a bad value."""
    parsed: dict[str, int] = {}
    for name, value in configs.items():
        key = GROUP_KEYS.get(name)
        if key is None:
            raise InvalidGroupConfig(f"Unknown group config name: {name}")
        try:
            value_ms = key.check(value)
        except BadValue as exc:
            raise InvalidGroupConfig(str(exc)) from None
        assert isinstance(value_ms, int)  # both keys are INT
        parsed[name] = value_ms
    return parsed


class GroupConfigs:
    def __init__(self, storage: Storage, data_dir: str) -> None:
        self.storage = storage
        self.path = os.path.join(data_dir, GROUP_CONFIGS_FILE)
        self.configs: dict[str, dict[str, str]] = {}  # group id -> name -> value
        self.parsed: dict[str, dict[str, int]] = {}  # the same, checked and parsed

    def load(self) -> None:
        """`DataDirError` if the file cannot be read as samsa wrote it."""
        raw = self.storage.read_all(self.path)
        try:
            saved = json.loads(raw) if raw else {}
            configs = {str(g): {str(k): str(v) for k, v in c.items()} for g, c in saved.items()}
            self.parsed = {group: check(values) for group, values in configs.items()}
            self.configs = configs
        except (ValueError, AttributeError) as exc:
            raise DataDirError(
                f"{self.path} cannot be used ({exc}); correct or remove it (the group configs "
                "in it are then lost)"
            ) from None

    def set(self, group_id: str, configs: dict[str, str]) -> None:
        """The group's configs are now `configs` (none: back to the defaults), recorded before
        this returns; `InvalidGroupConfig` if they are not valid, OSError if they could not be
        recorded, and then nothing changes."""
        after, parsed = dict(self.configs), dict(self.parsed)
        if configs:
            parsed[group_id] = check(configs)
            after[group_id] = configs
        else:
            parsed.pop(group_id, None)
            after.pop(group_id, None)
        self.storage.write_atomic(self.path, json.dumps(after, indent=1).encode())
        self.configs, self.parsed = after, parsed
