"""Kafka's `ConfigDef` for the configs a client can set: each config's type, default, valid
values and documentation, and the checks that refuse a bad value with Kafka's own message.

A config's value travels as a string, as in Kafka's admin APIs. `ConfigKey.check` parses it as
Kafka's `ConfigDef.parseType` does (trimmed; `true`/`false` in any case; Java's integer ranges)
and applies the key's validator (`Range`, `ValidString`, `ValidList`, ...), raising `BadValue`
with the text Kafka's `ConfigException` has: "Invalid value V for configuration N: WHY".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

SHORT_MIN, SHORT_MAX = -(2**15), 2**15 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Java's Double.parseDouble, less hexadecimal floats.
_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[fFdD]?")
_LIST_SEPARATOR = re.compile(r"\s*,\s*")


class ConfigType(IntEnum):
    """`DescribeConfigsResponse.ConfigType`: the config_type DescribeConfigs v3+ reports."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


_INTEGER_RANGES = {
    ConfigType.SHORT: (SHORT_MIN, SHORT_MAX),
    ConfigType.INT: (INT_MIN, INT_MAX),
    ConfigType.LONG: (LONG_MIN, LONG_MAX),
}


class BadValue(ValueError):
    """A value Kafka's `ConfigDef` refuses; the message is Kafka's `ConfigException` text."""

    def __init__(self, name: str, value: object, why: str) -> None:
        super().__init__(f"Invalid value {_java(value)} for configuration {name}: {why}")


Value = bool | int | float | str | list[str]
Validator = Callable[[str, Value], None]


@dataclass(frozen=True, slots=True)
class ConfigKey:
    name: str
    type: ConfigType
    default: str
    doc: str
    validator: Validator | None = None

    def check(self, value: str) -> Value:
        """`value` parsed; `BadValue` if Kafka would refuse it."""
        parsed = parse(self.name, value, self.type)
        if self.validator is not None:
            self.validator(self.name, parsed)
        return parsed


def parse(name: str, value: str, kind: ConfigType) -> Value:
    trimmed = value.strip()
    if kind is ConfigType.BOOLEAN:
        if trimmed.lower() not in ("true", "false"):
            raise BadValue(name, value, "Expected value to be either true or false")
        return trimmed.lower() == "true"
    if kind in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[kind]
        if not _INTEGER.fullmatch(trimmed) or not low <= int(trimmed) <= high:
            raise BadValue(name, value, f"Not a number of type {kind.name}")
        return int(trimmed)
    if kind is ConfigType.DOUBLE:
        if not _DOUBLE.fullmatch(trimmed):
            raise BadValue(name, value, "Not a number of type DOUBLE")
        return float(trimmed.rstrip("fFdD").replace("Infinity", "inf"))
    if kind is ConfigType.LIST:
        return _LIST_SEPARATOR.split(trimmed) if trimmed else []
    return trimmed


@dataclass(frozen=True, slots=True)
class AtLeast:
    """`ConfigDef.Range.atLeast`."""

    low: int

    def __call__(self, name: str, value: Value) -> None:
        if isinstance(value, int | float) and value < self.low:
            raise BadValue(name, value, f"Value must be at least {self.low}")

    def __str__(self) -> str:
        return f"[{self.low},...]"


@dataclass(frozen=True, slots=True)
class Between:
    """`ConfigDef.Range.between`."""

    low: int
    high: int

    def __call__(self, name: str, value: Value) -> None:
        AtLeast(self.low)(name, value)
        if isinstance(value, int | float) and value > self.high:
            raise BadValue(name, value, f"Value must be no more than {self.high}")

    def __str__(self) -> str:
        return f"[{self.low},...,{self.high}]"


@dataclass(frozen=True, slots=True)
class OneOf:
    """`ValidString.in`, and for a LIST `ValidList.in`: each element one of `valid`."""

    valid: tuple[str, ...]

    def __call__(self, name: str, value: Value) -> None:
        for each in value if isinstance(value, list) else [str(value)]:
            if each not in self.valid:
                raise BadValue(name, each, f"String must be one of: {', '.join(self.valid)}")

    def __str__(self) -> str:
        return "[" + ", ".join(self.valid) + "]"


def at_least(low: int) -> Validator:
    return AtLeast(low)


def between(low: int, high: int) -> Validator:
    return Between(low, high)


def one_of(*valid: str) -> Validator:
    return OneOf(valid)


def valid_values(validator: Validator | None) -> str:
    """The valid values as Kafka's documentation writes them ("[1,...]"); "" if not one of
    these (a samsa-specific check documents itself)."""
    return str(validator) if isinstance(validator, AtLeast | Between | OneOf) else ""


def _java(value: object) -> str:
    """How Java's string concatenation writes a parsed config value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)
