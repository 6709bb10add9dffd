"""One version of each API for the handlers: kio entities converted between versions.

kio generates one set of frozen dataclasses per version of every API; Kafka's own generated
classes are one per API, holding the fields of every version. samsa's handlers see one version
of each API, the highest it serves: a request is converted up to it after decoding, a response
down to the version the client asked for before encoding (identity when they are the same, as
for current clients' Produce and Fetch). Fields are matched by name, as in Kafka's classes:

- a field both versions have is copied; nested entities are converted the same way;
- a field only the target has gets its schema default, or when the schema gives none Kafka's
  implicit default for its type (null when nullable, else 0, false, "", empty): what Kafka's
  generated class holds for a field the version it read does not carry;
- a field only the source has is dropped: the target version cannot carry it. For a request
  that loses what a handler needs, the handler's view says how the old field maps onto the new
  ones (`samsa.broker.routing`), as Kafka's request classes do.

A plan per (source, target) class pair is made once and cached.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from kio.static.protocol import Entity

E = TypeVar("E", bound=Entity)
_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    copied: tuple[tuple[str, type[Entity] | None], ...]  # name, the target's nested entity
    filled: dict[str, object]  # implicit defaults of the target's fields the source lacks


_PLANS: dict[tuple[type[Entity], type[Entity]], _Plan] = {}


def convert(value: Entity, target: type[E]) -> E:
    """`value` as an instance of `target`, another version of the same entity."""
    if type(value) is target:
        return value
    plan = _PLANS.get((type(value), target)) or _plan(type(value), target)
    fields = dict(plan.filled)
    for name, nested in plan.copied:
        item = getattr(value, name)
        if nested is not None and item is not None:
            if isinstance(item, tuple):
                item = tuple([convert(each, nested) for each in item])
            else:
                item = convert(item, nested)
        fields[name] = item
    made: E = _construct(target, fields)
    return made


def _construct(cls: type[E], fields: dict[str, object]) -> E:
    make: Callable[..., E] = cls
    return make(**fields)


def nested_entity(hint: object) -> type[Entity] | None:
    """The entity class in a field's type, alone or in a tuple, an optional or both."""
    args = typing.get_args(hint)
    for candidate in (hint, *args, *(a for arg in args for a in typing.get_args(arg))):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return typing.cast(type[Entity], candidate)  # kio's dataclasses are all entities
    return None


def implicit_default(hint: Any) -> object:
    """Kafka's default for a field whose schema gives none (`MessageDataGenerator`)."""
    if type(None) in typing.get_args(hint):
        return None
    if typing.get_origin(hint) is tuple:
        return ()
    nested = nested_entity(hint)
    if nested is not None:
        return default_instance(nested)
    if not isinstance(hint, type):
        raise TypeError(f"no implicit default for {hint!r}")
    if issubclass(hint, bool):
        return False
    if issubclass(hint, str):
        return ""
    if issubclass(hint, bytes):
        return b""
    if issubclass(hint, enum.Enum):  # ErrorCode: 0 is NONE
        return hint(0)
    # kio's phantom types (i32, i32Timedelta, TZAware...) are plain values at run time.
    if issubclass(hint, int):
        return 0
    if issubclass(hint, float):
        return 0.0
    if issubclass(hint, datetime.timedelta):
        return datetime.timedelta(0)
    if issubclass(hint, datetime.datetime):
        return _EPOCH
    raise TypeError(f"no implicit default for {hint!r}")


def default_instance(cls: type[E]) -> E:
    """An instance of `cls` holding its defaults: the schema's, else Kafka's implicit ones."""
    return _construct(cls, _defaults(cls))


def _defaults(cls: type[Entity], given: frozenset[str] = frozenset()) -> dict[str, object]:
    """The implicit default of each field of `cls` not in `given` without a schema default."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: implicit_default(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.name not in given
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    }


def _plan(source: type[Entity], target: type[Entity]) -> _Plan:
    hints = typing.get_type_hints(target)
    have = frozenset(f.name for f in dataclasses.fields(source))
    copied = tuple(
        (f.name, nested_entity(hints[f.name])) for f in dataclasses.fields(target) if f.name in have
    )
    plan = _Plan(copied, _defaults(target, have))
    _PLANS[source, target] = plan
    return plan


def dropped(source: type[Entity], target: type[Entity]) -> list[str]:
    """The dotted names of the fields `convert(_, target)` drops from `source` (for tests)."""
    hints, target_hints = typing.get_type_hints(source), typing.get_type_hints(target)
    kept = {f.name for f in dataclasses.fields(target)}
    lost = []
    for f in dataclasses.fields(source):
        if f.name not in kept:
            lost.append(f.name)
            continue
        inner, target_inner = nested_entity(hints[f.name]), nested_entity(target_hints[f.name])
        if inner is not None and target_inner is not None:
            lost += [f"{f.name}.{name}" for name in dropped(inner, target_inner)]
    return lost
