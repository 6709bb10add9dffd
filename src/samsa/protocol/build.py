"""Build a kio response of any version from one version-independent description.

Handlers describe a response once, as nested dicts with every field any version may need; `build`
keeps the fields the requested version has and converts nested dicts into that version's nested
classes. A field the version lacks is dropped; a field the version needs but the description
lacks falls back to the schema default, and is a programming error when there is none.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from collections.abc import Mapping
from typing import Any

from kio.static.primitive import i32Timedelta, i64Timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    nested: type[Any] | None  # the nested entity class, for dicts and tuples of dicts
    timedelta: bool


_PLANS: dict[type[Any], tuple[_FieldPlan, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    cached = _PLANS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    plans = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        nested = None
        # The entity may sit inside a tuple, an optional, or an optional tuple
        # (`tuple[X, ...] | None`, e.g. CreateTopics v5+ result configs).
        args = typing.get_args(hint)
        for candidate in (hint, *args, *(a for arg in args for a in typing.get_args(arg))):
            if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
                nested = candidate
        timedelta = hint in (i32Timedelta, i64Timedelta) or i32Timedelta in typing.get_args(hint)
        plans.append(_FieldPlan(f.name, nested, timedelta))
    _PLANS[cls] = tuple(plans)
    return _PLANS[cls]


def build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for plan in _plan(cls):
        if plan.name not in data:
            continue
        value = data[plan.name]
        if plan.nested is not None and value is not None:
            if isinstance(value, Mapping):
                value = build(plan.nested, value)
            else:
                value = tuple(build(plan.nested, item) for item in value)
        elif plan.timedelta and isinstance(value, int):
            value = datetime.timedelta(milliseconds=value)
        kwargs[plan.name] = value
    return cls(**kwargs)


def nested_type(cls: type[Any], field_name: str) -> type[Any]:
    """The nested entity class behind a field of `cls` (for building items one at a time)."""
    for plan in _plan(cls):
        if plan.name == field_name and plan.nested is not None:
            return plan.nested
    raise KeyError(f"{cls.__qualname__}.{field_name} is not a nested entity")
