"""The broker's dynamic configs: set by AlterConfigs / IncrementalAlterConfigs on the BROKER
resource, persisted in `broker-configs.json`, and laid over the static ones at every start.

As Kafka (`DynamicBrokerConfig`), a config is set for this broker (resource name "1",
DYNAMIC_BROKER_CONFIG) or as the cluster default (resource name "", DYNAMIC_DEFAULT_BROKER_CONFIG);
the first wins over the second, both over server.properties (STATIC_BROKER_CONFIG), all over the
default (DEFAULT_CONFIG).

What can be set: the broker configs Kafka lets change dynamically that are topic defaults
(`DynamicLogConfig.ReconfigurableConfigs`: the first broker synonym of each topic config, less
log.message.format.version), less samsa's two flush settings, which decide at start whether
acknowledgements wait for fsync. A change takes effect at once: the topics that do not set the
config themselves take the new value; of these samsa acts on the synonyms of the topic configs
it acts on (`topic_configs.ACTING`). Kafka's other dynamic configs about threads, the log
cleaner, SASL, remote storage and metrics are stored and described, and change nothing
(`STORED_ONLY`). The rest are refused as Kafka refuses its static ones: listeners, SSL
(read once, at start), and the connection limits and producer.id.expiration.ms, which
samsa reads at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import IntEnum

from samsa.broker.topic_configs import TOPIC_CONFIGS
from samsa.broker.topics import DataDirError
from samsa.config import DEFAULTS, BrokerConfig, ConfigError, broker_settings, load
from samsa.configdef import BadValue, ConfigKey, ConfigType
from samsa.log.storage import Storage

DYNAMIC_CONFIGS_FILE = "broker-configs.json"


class ConfigSource(IntEnum):
    """`DescribeConfigsResponse.ConfigSource`."""

    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    GROUP_CONFIG = 8


# samsa reads these at start only: they decide whether an acknowledgement waits for fsync.
_STATIC_IN_SAMSA = frozenset({"log.flush.interval.messages", "log.flush.interval.ms"})

# Each dynamic broker config with its type and valid values: its topic config's, renamed.
BROKER_KEYS: dict[str, ConfigKey] = {
    spec.synonyms[0]: ConfigKey(
        spec.synonyms[0], spec.key.type, spec.key.default, spec.key.doc, spec.key.validator
    )
    for name, spec in TOPIC_CONFIGS.items()
    if spec.synonyms and name != "message.format.version"
    if spec.synonyms[0] not in _STATIC_IN_SAMSA
}


_LONG_MAX = str(2**63 - 1)
# Kafka's other dynamic broker configs (`DynamicBrokerConfig.AllDynamicConfigs`), with their
# types and defaults: samsa stores them and acts on none. True: per broker only (a listener
# config, refused at the cluster-wide default).
STORED_ONLY: dict[str, tuple[ConfigType, str, bool]] = {
    "background.threads": (ConfigType.INT, "10", False),
    "num.io.threads": (ConfigType.INT, "8", False),
    "num.network.threads": (ConfigType.INT, "3", False),
    "num.recovery.threads.per.data.dir": (ConfigType.INT, "2", False),
    "num.replica.fetchers": (ConfigType.INT, "1", False),
    "log.cleaner.dedupe.buffer.size": (ConfigType.LONG, "134217728", False),
    "log.cleaner.io.buffer.load.factor": (ConfigType.DOUBLE, "0.9", False),
    "log.cleaner.io.buffer.size": (ConfigType.INT, "524288", False),
    "log.cleaner.threads": (ConfigType.INT, "1", False),
    "max.connection.creation.rate": (ConfigType.INT, "2147483647", False),
    "metric.reporters": (ConfigType.LIST, "", False),
    "transaction.partition.verification.enable": (ConfigType.BOOLEAN, "true", False),
    "remote.fetch.max.wait.ms": (ConfigType.INT, "500", False),
    "remote.list.offsets.request.timeout.ms": (ConfigType.LONG, "30000", False),
    "remote.log.index.file.cache.total.size.bytes": (ConfigType.LONG, "1073741824", False),
    "remote.log.manager.copy.max.bytes.per.second": (ConfigType.LONG, _LONG_MAX, False),
    "remote.log.manager.fetch.max.bytes.per.second": (ConfigType.LONG, _LONG_MAX, False),
    "sasl.enabled.mechanisms": (ConfigType.LIST, "GSSAPI", True),
    "sasl.kerberos.kinit.cmd": (ConfigType.STRING, "/usr/bin/kinit", True),
    "sasl.kerberos.min.time.before.relogin": (ConfigType.LONG, "60000", True),
    "sasl.kerberos.principal.to.local.rules": (ConfigType.LIST, "DEFAULT", True),
    "sasl.kerberos.service.name": (ConfigType.STRING, "", True),
    "sasl.kerberos.ticket.renew.jitter": (ConfigType.DOUBLE, "0.05", True),
    "sasl.kerberos.ticket.renew.window.factor": (ConfigType.DOUBLE, "0.8", True),
    "sasl.login.refresh.buffer.seconds": (ConfigType.SHORT, "300", True),
    "sasl.login.refresh.min.period.seconds": (ConfigType.SHORT, "60", True),
    "sasl.login.refresh.window.factor": (ConfigType.DOUBLE, "0.8", True),
    "sasl.login.refresh.window.jitter": (ConfigType.DOUBLE, "0.05", True),
    "sasl.mechanism.inter.broker.protocol": (ConfigType.STRING, "GSSAPI", True),
}
BROKER_KEYS.update(
    (name, ConfigKey(name, kind, default, "Kafka's; samsa stores it and acts on none of it."))
    for name, (kind, default, _) in STORED_ONLY.items()
)
PER_BROKER_ONLY = frozenset(name for name, (_, _, per_broker) in STORED_ONLY.items() if per_broker)


class InvalidRequest(ValueError):
    """A broker config change Kafka refuses with INVALID_REQUEST; the message is Kafka's."""


Synonym = tuple[str, str, ConfigSource]


class DynamicBrokerConfigs:
    def __init__(self, storage: Storage, data_dir: str, static: BrokerConfig) -> None:
        self.storage = storage
        self.path = os.path.join(data_dir, DYNAMIC_CONFIGS_FILE)
        self.static = static
        self.per_broker: dict[str, str] = {}
        self.cluster_default: dict[str, str] = {}

    def load(self) -> BrokerConfig:
        """Read the dynamic configs back; the broker's config with them. `DataDirError` if the
        file cannot be read as samsa wrote it."""
        raw = self.storage.read_all(self.path)
        try:
            saved = json.loads(raw) if raw else {}
            self.per_broker = {str(k): str(v) for k, v in saved.get("broker", {}).items()}
            self.cluster_default = {
                str(k): str(v) for k, v in saved.get("cluster_default", {}).items()
            }
            return self.effective()
        except (ValueError, AttributeError) as exc:  # ConfigError is a ValueError
            raise DataDirError(
                f"{self.path} cannot be used ({exc}); correct or remove it (the dynamic broker "
                "configs in it are then lost)"
            ) from None

    def save(self) -> None:
        data = {"broker": self.per_broker, "cluster_default": self.cluster_default}
        self.storage.write_atomic(self.path, json.dumps(data, indent=1).encode())

    def layer(self, per_broker: bool) -> dict[str, str]:
        return self.per_broker if per_broker else self.cluster_default

    def merged(self) -> dict[str, str]:
        return {**self.cluster_default, **self.per_broker}

    def effective(self) -> BrokerConfig:
        """The static config with the dynamic values samsa has a setting for laid over it."""
        return self._over_static(self.merged())

    def check(self, configs: Mapping[str, str], per_broker: bool) -> BrokerConfig:
        """The broker's config if the layer `per_broker` held just `configs`; `InvalidRequest`
        with Kafka's message if Kafka would refuse them (`DynamicBrokerConfig.validateConfigs`)."""
        fixed = sorted(name for name in configs if name not in BROKER_KEYS)
        if fixed:
            raise InvalidRequest(
                f"Cannot update these configs dynamically: Set({', '.join(fixed)})"
            )
        for name, value in configs.items():
            try:
                BROKER_KEYS[name].check(value)
            except BadValue as exc:
                raise InvalidRequest(str(exc)) from None
        if per_broker:
            merged = {**self.cluster_default, **configs}
        else:
            merged = {**configs, **self.per_broker}
        try:
            return self._over_static(merged)
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None

    def _over_static(self, dynamic: Mapping[str, str]) -> BrokerConfig:
        known = broker_settings(self.static)
        return load({k: v for k, v in dynamic.items() if k in known}, base=self.static)

    def synonyms(self, name: str, per_broker: bool = True) -> list[Synonym]:
        """Where broker config `name`'s value comes from, the one in force first (Kafka's
        `ConfigHelper.configSynonyms`); empty if no layer has it."""
        found: list[Synonym] = []
        if per_broker and name in self.per_broker:
            found.append((name, self.per_broker[name], ConfigSource.DYNAMIC_BROKER_CONFIG))
        if name in self.cluster_default:
            found.append(
                (name, self.cluster_default[name], ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
            )
        if not per_broker:
            return found
        static, default = broker_settings(self.static), broker_settings(DEFAULTS)
        if name in static and static[name] != default[name]:
            found.append((name, static[name], ConfigSource.STATIC_BROKER_CONFIG))
        if name in default:
            found.append((name, default[name], ConfigSource.DEFAULT_CONFIG))
        elif name in BROKER_KEYS:
            found.append((name, BROKER_KEYS[name].default, ConfigSource.DEFAULT_CONFIG))
        return found
