"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, for TOPIC and BROKER resources.

A topic's configs are its own (TOPIC_CONFIG) or its first broker synonym's, from wherever that
has its value (`samsa.broker.dynamic`); see `samsa.broker.topic_configs` for which exist and
which samsa acts on. A change is checked whole for its resource, as Kafka's controller checks
it (one bad config refuses the resource's every change), recorded (topics.json,
broker-configs.json), and in effect before the response is sent. `validate_only` checks only.

AlterConfigs (the legacy API) replaces a resource's whole set: configs it does not name are
removed. IncrementalAlterConfigs changes the configs it names: SET, DELETE, and for LIST
configs APPEND and SUBTRACT (KIP-339).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

from kio.schema.alter_configs.v2.request import AlterConfigsRequest
from kio.schema.alter_configs.v2.response import AlterConfigsResourceResponse, AlterConfigsResponse
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.describe_configs.v4.response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    IncrementalAlterConfigsRequest,
)
from kio.schema.incremental_alter_configs.v1.response import (
    AlterConfigsResourceResponse as IncrementalResourceResponse,
)
from kio.schema.incremental_alter_configs.v1.response import IncrementalAlterConfigsResponse
from kio.static.primitive import i8

from samsa.broker import authz, group_configs
from samsa.broker.authz import Kind, Op
from samsa.broker.dynamic import BROKER_KEYS, ConfigSource, InvalidRequest, Synonym
from samsa.broker.group_configs import GROUP_KEYS
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.broker.topic_configs import TOPIC_CONFIGS
from samsa.broker.topics import Topic, TopicError, check_topic_name
from samsa.config import SENSITIVE, broker_settings
from samsa.configdef import ConfigKey, ConfigType
from samsa.coordinator.group.consumer_machine import (
    HEARTBEAT_INTERVAL_CONFIG,
    SESSION_TIMEOUT_CONFIG,
)
from samsa.protocol.codec import Request
from samsa.security.acl import AclOperation

if TYPE_CHECKING:
    from samsa.broker.core import Broker

R = TypeVar("R")


RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
RESOURCE_GROUP = 32


class OpType(IntEnum):
    """`AlterConfigOp.OpType`."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


DELETE = i8(OpType.DELETE)


# ----------------------------------------------------------------- describing
def topic_config(broker: Broker, topic: Topic, name: str) -> tuple[str, list[Synonym]]:
    """Topic config `name`'s value for `topic` and where it comes from, the one in force
    first (Kafka's `ConfigHelper.createTopicConfigEntry`)."""
    spec = TOPIC_CONFIGS[name]
    found: list[Synonym] = []
    if name in topic.configs:
        found.append((name, topic.configs[name], ConfigSource.TOPIC_CONFIG))
    if spec.synonyms:
        found += broker.dynamic.synonyms(spec.synonyms[0])
    return (found[0][1] if found else spec.key.default), found


def source_of(found: list[Synonym]) -> ConfigSource:
    return found[0][2] if found else ConfigSource.DEFAULT_CONFIG


@dataclass(frozen=True, slots=True)
class _Asked:
    synonyms: bool
    documentation: bool


def _entry(
    name: str,
    value: str,
    found: list[Synonym],
    key: ConfigKey | None,
    read_only: bool,
    asked: _Asked,
) -> DescribeConfigsResourceResult:
    sensitive = name in SENSITIVE  # Kafka's PASSWORD settings: never shown
    return DescribeConfigsResourceResult(
        name=name,
        value=None if sensitive else value,
        read_only=read_only,
        config_source=i8(source_of(found)),
        is_sensitive=sensitive,
        synonyms=tuple(
            DescribeConfigsSynonym(name=n, value=None if sensitive else v, source=i8(s))
            for n, v, s in found
        )
        if asked.synonyms
        else (),
        config_type=i8(key.type if key is not None else ConfigType.UNKNOWN),
        documentation=key.doc if key is not None and asked.documentation else None,
    )


def handle_describe_configs(broker: Broker, request: Request[DescribeConfigsRequest]) -> Outcome:
    body = request.payload
    asked = _Asked(body.include_synonyms, body.include_documentation)
    results = tuple(
        _describe(
            broker,
            resource,
            asked,
            _refusal(
                broker, request, Op.DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name
            ),
        )
        for resource in body.resources
    )
    return reply(request, DescribeConfigsResponse(throttle_time=NO_THROTTLE, results=results))


def _refusal(
    broker: Broker,
    request: Request[Any],
    op: AclOperation,
    kind: int,
    name: str,
) -> ErrorCode | None:
    """The error for a resource the client may not describe or alter (ConfigHelper,
    ControllerApis.authorizeAlterResource): the cluster's right for a broker, the topic's or
    group's for theirs (a broker logger is the cluster's too)."""
    if kind in (RESOURCE_BROKER, RESOURCE_BROKER_LOGGER) and not authz.cluster_allowed(
        broker, request, op
    ):
        return ErrorCode.cluster_authorization_failed
    if kind == RESOURCE_TOPIC and not authz.allowed(broker, request, op, Kind.TOPIC, name):
        return ErrorCode.topic_authorization_failed
    if kind == RESOURCE_GROUP and not authz.allowed(broker, request, op, Kind.GROUP, name):
        return ErrorCode.group_authorization_failed
    return None


def _describe(
    broker: Broker, resource: DescribeConfigsResource, asked: _Asked, refusal: ErrorCode | None
) -> DescribeConfigsResult:
    wanted = set(resource.configuration_keys or ())
    configs: tuple[DescribeConfigsResourceResult, ...] = ()
    error, message = ErrorCode.none, None
    try:
        if refusal is not None:
            raise TopicError(refusal, "")
        if resource.resource_type == RESOURCE_TOPIC:
            entries = _describe_topic(broker, resource.resource_name, asked)
        elif resource.resource_type == RESOURCE_BROKER:
            entries = _describe_broker(broker, resource.resource_name, asked)
        elif resource.resource_type == RESOURCE_GROUP:
            entries = _describe_group(broker, resource.resource_name, asked)
        else:
            raise TopicError(
                ErrorCode.invalid_request, f"Unsupported resource type: {resource.resource_type}"
            )
        configs = tuple(entry for entry in entries if not wanted or entry.name in wanted)
    except TopicError as exc:
        error, message = exc.error, str(exc) or None
    return DescribeConfigsResult(
        error_code=error,
        error_message=message,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        configs=configs,
    )


def _describe_topic(
    broker: Broker, name: str, asked: _Asked
) -> list[DescribeConfigsResourceResult]:
    check_topic_name(name)
    topic = broker.topics.get(name)
    if topic is None:
        raise TopicError(ErrorCode.unknown_topic_or_partition, f"no topic {name!r}")
    entries = []
    for config, spec in TOPIC_CONFIGS.items():
        value, found = topic_config(broker, topic, config)
        entries.append(_entry(config, value, found, spec.key, False, asked))
    return entries


def _describe_broker(
    broker: Broker, name: str, asked: _Asked
) -> list[DescribeConfigsResourceResult]:
    """Resource "" is the cluster-wide dynamic defaults; this broker's id, every config."""
    dynamic = broker.dynamic
    if name == "":
        return [
            _entry(
                config,
                value,
                dynamic.synonyms(config, False),
                BROKER_KEYS.get(config),
                False,
                asked,
            )
            for config, value in dynamic.cluster_default.items()
        ]
    _check_broker_id(broker, name, describing=True)
    defaults = {name: key.default for name, key in BROKER_KEYS.items()}
    values = {**defaults, **broker_settings(broker.config), **dynamic.merged()}
    return [
        _entry(
            config,
            value,
            dynamic.synonyms(config),
            BROKER_KEYS.get(config) or _setting_key(config, value),
            config not in BROKER_KEYS,
            asked,
        )
        for config, value in values.items()
    ]


def _describe_group(
    broker: Broker, name: str, asked: _Asked
) -> list[DescribeConfigsResourceResult]:
    """Each group config: the group's own (GROUP_CONFIG) or the broker's default for it."""
    own = broker.group_configs.configs.get(name, {})
    # The defaults the group coordinator applies, not the broker config it was started from.
    settings = broker.groups.settings
    defaults = {
        SESSION_TIMEOUT_CONFIG: str(settings.consumer_session_timeout_ms),
        HEARTBEAT_INTERVAL_CONFIG: str(settings.consumer_heartbeat_interval_ms),
    }
    entries = []
    for config, key in GROUP_KEYS.items():
        found: list[Synonym] = []
        if config in own:
            found.append((config, own[config], ConfigSource.GROUP_CONFIG))
        found.append((f"group.{config}", defaults[config], ConfigSource.DEFAULT_CONFIG))
        entries.append(_entry(config, found[0][1], found, key, False, asked))
    return entries


def _alter_group(broker: Broker, name: str, change: Change, validate_only: bool) -> None:
    if not name:
        raise TopicError(ErrorCode.invalid_request, "Group name must not be empty")
    configs = change(broker.group_configs.configs.get(name, {}))
    try:
        if validate_only:
            group_configs.check(configs)
            return
        broker.group_configs.set(name, configs)
    except group_configs.InvalidGroupConfig as exc:
        raise TopicError(ErrorCode.invalid_config, str(exc)) from None
    except OSError as exc:
        raise TopicError(ErrorCode.kafka_storage_error, f"recording group configs: {exc}") from exc
    broker.groups.consumer.group_configs = broker.group_configs.parsed


def _setting_key(name: str, value: str) -> ConfigKey:
    """A samsa setting's type, as near to Kafka's as its value tells."""
    if value in ("true", "false"):
        kind = ConfigType.BOOLEAN
    elif value.lstrip("-").isdigit():
        kind = (
            ConfigType.LONG if name.endswith(".ms") or abs(int(value)) >= 2**31 else ConfigType.INT
        )
    else:
        kind = ConfigType.STRING
    return ConfigKey(name, kind, "", f"The broker setting {name}; samsa reads it at start.")


def _check_broker_id(broker: Broker, name: str, describing: bool) -> None:
    """Kafka's words differ between DescribeConfigs (`ConfigHelper`) and the alters
    (`ConfigAdminManager`)."""
    if not name.lstrip("-").isdigit():
        which = "Broker" if describing else "Node"
        raise TopicError(
            ErrorCode.invalid_request, f"{which} id must be an integer, but it is: {name}"
        )
    if int(name) != broker.node_id:
        or_empty = " or empty string" if describing else ""
        raise TopicError(
            ErrorCode.invalid_request,
            f"Unexpected broker id, expected {broker.node_id}{or_empty}, but received {name}",
        )


# ----------------------------------------------------------------- altering
# What a resource's configs become, from what they are (`change(current)`).
Change = Callable[[Mapping[str, str]], dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Asking:
    """One resource of an AlterConfigs or IncrementalAlterConfigs request."""

    resource_type: int
    name: str
    configs: list[str]  # the names it changes
    nulls: list[str]  # those whose value is null where one is needed
    change: Change


def handle_alter_configs(broker: Broker, request: Request[AlterConfigsRequest]) -> Outcome:
    body = request.payload
    asked = [
        _Asking(
            r.resource_type,
            r.resource_name,
            [c.name for c in r.configs],
            [c.name for c in r.configs if c.value is None],
            _replacing({c.name: c.value or "" for c in r.configs}),
        )
        for r in body.resources
    ]
    results = _answers(broker, request, asked, body.validate_only, AlterConfigsResourceResponse)
    return reply(request, AlterConfigsResponse(throttle_time=NO_THROTTLE, responses=results))


def handle_incremental_alter_configs(
    broker: Broker, request: Request[IncrementalAlterConfigsRequest]
) -> Outcome:
    body = request.payload
    asked = [
        _Asking(
            r.resource_type,
            r.resource_name,
            [c.name for c in r.configs],
            [c.name for c in r.configs if c.value is None and c.config_operation != DELETE],
            _applying(r.resource_type, r.configs),
        )
        for r in body.resources
    ]
    results = _answers(broker, request, asked, body.validate_only, IncrementalResourceResponse)
    return reply(
        request, IncrementalAlterConfigsResponse(throttle_time=NO_THROTTLE, responses=results)
    )


def _answers(
    broker: Broker,
    request: Request[Any],
    asked: list[_Asking],
    validate_only: bool,
    answer: Callable[..., R],
) -> tuple[R, ...]:
    """Each resource changed (or checked), and answered with `answer`'s response class."""
    resources = Counter((a.resource_type, a.name) for a in asked)
    answers = []
    for a in asked:
        refusal = _refusal(broker, request, Op.ALTER_CONFIGS, a.resource_type, a.name)
        repeated = resources[(a.resource_type, a.name)] > 1
        error, message = _alter(broker, a, repeated, validate_only, refusal)
        answers.append(
            answer(
                error_code=error,
                error_message=message,
                resource_type=i8(a.resource_type),
                resource_name=a.name,
            )
        )
    return tuple(answers)


def _alter(
    broker: Broker,
    asked: _Asking,
    repeated: bool,
    validate_only: bool,
    refusal: ErrorCode | None,
) -> tuple[ErrorCode, str | None]:
    """One resource's change (Kafka's `ConfigAdminManager.preprocess`, then the controller's
    checks); its error code and message."""
    try:
        if repeated:
            raise TopicError(ErrorCode.invalid_request, "Each resource must appear at most once.")
        if len(set(asked.configs)) < len(asked.configs):
            raise TopicError(ErrorCode.invalid_request, "Error due to duplicate config keys")
        if asked.nulls:
            raise TopicError(
                ErrorCode.invalid_request,
                f"Null value not supported for : {', '.join(asked.nulls)}",
            )
        if refusal is not None:
            return refusal, None
        if asked.resource_type == RESOURCE_TOPIC:
            _alter_topic(broker, asked.name, asked.change, validate_only)
        elif asked.resource_type == RESOURCE_BROKER:
            _alter_broker(broker, asked.name, asked.change, validate_only)
        elif asked.resource_type == RESOURCE_GROUP:
            _alter_group(broker, asked.name, asked.change, validate_only)
        else:
            raise TopicError(
                ErrorCode.invalid_request, f"Unknown resource type {asked.resource_type}"
            )
    except TopicError as exc:
        return exc.error, str(exc)
    return ErrorCode.none, None


def _alter_topic(broker: Broker, name: str, change: Change, validate_only: bool) -> None:
    if name == "":
        raise TopicError(ErrorCode.invalid_request, "Default topic resources are not allowed.")
    check_topic_name(name)
    topic = broker.topics.get(name)
    configs = broker.topics.check_configs(change(topic.configs if topic else {}))
    if topic is None:
        raise TopicError(
            ErrorCode.unknown_topic_or_partition, f"The topic '{name}' does not exist."
        )
    if topic.is_internal:
        # The coordinators' state is their logs' replay: retention or a deleting cleanup
        # policy there would lose committed offsets and transactions at the next restart.
        raise TopicError(
            ErrorCode.invalid_request,
            f"cannot alter the configs of internal topic {name}: only the broker manages them",
        )
    if not validate_only:
        broker.topics.alter(topic, configs)


def _alter_broker(broker: Broker, name: str, change: Change, validate_only: bool) -> None:
    if name != "":
        _check_broker_id(broker, name, describing=False)
    per_broker = name != ""
    dynamic = broker.dynamic
    before = dynamic.layer(per_broker)
    configs = change(before)
    try:
        config = dynamic.check(configs, per_broker)
    except InvalidRequest as exc:
        raise TopicError(ErrorCode.invalid_request, str(exc)) from None
    if validate_only:
        return
    before_copy = dict(before)
    before.clear()
    before.update(configs)
    try:
        dynamic.save()
    except OSError as exc:
        before.clear()
        before.update(before_copy)
        raise TopicError(ErrorCode.kafka_storage_error, f"recording broker configs: {exc}") from exc
    broker.apply_config(config)


def _replacing(configs: dict[str, str]) -> Change:
    def change(current: Mapping[str, str]) -> dict[str, str]:
        return dict(configs)

    return change


def _applying(resource_type: int, ops: tuple[AlterableConfig, ...]) -> Change:
    def change(current: Mapping[str, str]) -> dict[str, str]:
        return _apply_ops(resource_type, current, ops)

    return change


def _apply_ops(
    resource_type: int, current: Mapping[str, str], ops: tuple[AlterableConfig, ...]
) -> dict[str, str]:
    """IncrementalAlterConfigs' operations on a resource's configs (Kafka's
    `ConfigurationControlManager.incrementalAlterConfigResource`)."""
    configs = dict(current)
    for op in ops:
        operation = int(op.config_operation)
        if operation == OpType.SET:
            configs[op.name] = op.value or ""
        elif operation == OpType.DELETE:
            configs.pop(op.name, None)
        elif operation in (OpType.APPEND, OpType.SUBTRACT):
            key = _list_key(resource_type, op.name)
            if key is None and resource_type == RESOURCE_BROKER:
                configs[op.name] = op.value or ""  # not a dynamic config: refused by the checks
                continue
            if key is None or key.type is not ConfigType.LIST:
                raise TopicError(
                    ErrorCode.invalid_config,
                    f"Can't {OpType(operation).name} to key {op.name} because its "
                    "type is not LIST.",
                )
            old = [p for p in configs.get(op.name, key.default).split(",") if p]
            given = (op.value or "").split(",")
            if operation == OpType.APPEND:
                new = old + [v for v in dict.fromkeys(given) if v not in old]
            else:
                new = [v for v in old if v not in given]
            configs[op.name] = ",".join(new)
        else:
            raise TopicError(
                ErrorCode.invalid_request, f"Unknown operations type {op.config_operation}"
            )
    return configs


def _list_key(resource_type: int, name: str) -> ConfigKey | None:
    if resource_type == RESOURCE_TOPIC:
        spec = TOPIC_CONFIGS.get(name)
        return None if spec is None else spec.key
    if resource_type == RESOURCE_GROUP:
        return GROUP_KEYS.get(name)
    return BROKER_KEYS.get(name)
