"""Generate kio-style classes for the request versions Kafka 4.0 removed (KIP-896).

kio is generated from Kafka 4's message schemas, so it has no classes for the versions Kafka 4.0
dropped, which clients in the field still send. This writes them from Kafka 3.9's schemas
(`clients/src/main/resources/common/message/*.json` of the 3.9 branch), in kio's shape: frozen,
slotted, keyword-only dataclasses whose fields carry kio's `kafka_type` metadata, so that
`kio.serial.entity_reader` / `entity_writer` read and write them, and whose field names and
types are the ones kio gives the same field in later versions, so `samsa.protocol.versions`
converts between them by name.

Only non-flexible versions are needed (every version KIP-896 removed predates flexible versions),
so tagged fields are refused rather than half supported.

To add an API's old versions (DescribeLogDirs v0 is the one an API being added needs: its v1+
are in kio), add a line to `WANTED` and run, from the repository root:

    python -m samsa.protocol.legacy.generate [KAFKA_3_9_MESSAGE_DIR]

The directory defaults to ../shared/reference/kafka-3.9-messages (a copy of Kafka 3.9's
message schemas). The output is `src/samsa/protocol/legacy/<api>/v<N>/{request,response}.py`
and `src/samsa/protocol/legacy/index.py`, formatted with ruff. `tests/protocol/test_legacy.py`
checks that the committed files are what this writes.
"""

from __future__ import annotations

import builtins
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# API name (as in the schema file names) -> the versions kio lacks that samsa serves.
WANTED: dict[str, tuple[int, ...]] = {
    "ListOffsets": (0,),
    "OffsetCommit": (0, 1),
    "OffsetFetch": (0,),
    "CreateTopics": (0, 1),
    "DeleteTopics": (0,),
    "OffsetForLeaderEpoch": (0, 1),
    "WriteTxnMarkers": (0,),
    "DescribeConfigs": (0,),
    "DescribeLogDirs": (0,),
    "DescribeAcls": (0,),
    "CreateAcls": (0,),
    "DeleteAcls": (0,),
}

DEFAULT_SOURCE = Path("../shared/reference/kafka-3.9-messages")
PACKAGE = Path(__file__).resolve().parent

# kio's special cases (its codegen/parser.py): these int fields are durations or timestamps,
# named without the "Ms"; these are error codes.
_TIMEDELTA_NAMES = frozenset(
    {
        "TimeoutMs",
        "timeoutMs",
        "ThrottleTimeMs",
        "MaxWaitMs",
        "SessionLifetimeMs",
        "TransactionTimeoutMs",
        "MaxLifetimeMs",
        "SessionTimeoutMs",
        "RebalanceTimeoutMs",
        "ExpiryTimePeriodMs",
        "RenewPeriodMs",
        "RetentionTimeMs",
        "HeartbeatIntervalMs",
        "PushIntervalMs",
    }
)
_DATETIME_NAMES = frozenset(
    {
        "IssueTimestampMs",
        "ExpiryTimestampMs",
        "MaxTimestampMs",
        "TransactionStartTimeMs",
        "LogAppendTimeMs",
    }
)
_ERROR_CODE_NAMES = frozenset({"ErrorCode", "PartitionErrorCode"})

_PRIMITIVE_HINTS = {
    "bool": "bool",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "float64": "f64",
    "string": "str",
    "bytes": "bytes",
    "uuid": "uuid.UUID",
    "records": "Records",
    "error_code": "ErrorCode",
    "timedelta_i32": "i32Timedelta",
    "timedelta_i64": "i64Timedelta",
    "datetime_i64": "TZAware",
}
_NUMBERS = frozenset({"int8", "int16", "int32", "int64", "uint16", "uint32", "uint64", "float64"})
_IMPORTS = {
    "i8": "from kio.static.primitive import i8",
    "i16": "from kio.static.primitive import i16",
    "i32": "from kio.static.primitive import i32",
    "i64": "from kio.static.primitive import i64",
    "u16": "from kio.static.primitive import u16",
    "u32": "from kio.static.primitive import u32",
    "u64": "from kio.static.primitive import u64",
    "f64": "from kio.static.primitive import f64",
    "Records": "from kio.static.primitive import Records",
    "i32Timedelta": "from kio.static.primitive import i32Timedelta",
    "i64Timedelta": "from kio.static.primitive import i64Timedelta",
    "TZAware": "from kio.static.primitive import TZAware",
    "ErrorCode": "from kio.schema.errors import ErrorCode",
    "uuid.UUID": "import uuid",
    "datetime": "import datetime",
}


class SchemaError(Exception):
    """Raised by the generator for a schema construct it does not support."""


def versions_match(spec: str | None, version: int) -> bool:
    """Whether `version` is in a schema's version spec: "none", "N", "N-M" or "N+"."""
    if spec is None or spec == "none":
        return False
    if spec.endswith("+"):
        return version >= int(spec[:-1])
    low, _, high = spec.partition("-")
    return int(low) <= version <= int(high or low)


def snake_case(name: str) -> str:
    """kio's field names: "ISRReplicas" -> "isr_replicas"; a builtin's name gets a "_"."""
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", spaced)
    spaced = re.sub(r"(\d)([A-Z][a-z])", r"\1_\2", spaced).lower()
    return spaced + "_" if spaced in dir(builtins) else spaced


def load_schema(path: Path) -> dict[str, Any]:
    """A Kafka message schema: JSON with whole-line // comments."""
    text = "".join(line for line in path.open() if not line.lstrip().startswith("//"))
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass
class _Module:
    """The classes of one schema at one version, and what they import."""

    schema: dict[str, Any]
    version: int
    imports: set[str] = field(default_factory=set)
    classes: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    @property
    def kind(self) -> str:
        kind: str = self.schema["type"]
        return kind

    def hint(self, name: str) -> str:
        if name in _IMPORTS:
            self.imports.add(_IMPORTS[name])
        return name

    def entity(self, name: str, fields: list[dict[str, Any]], top_level: bool = False) -> None:
        if name in self.done:
            return
        self.done.add(name)
        lines = [
            "@dataclass(frozen=True, slots=True, kw_only=True)",
            f"class {name}:",
            f"    __type__: ClassVar = EntityType.{self.kind if top_level else 'nested'}",
            f"    __version__: ClassVar[i16] = i16({self.version})",
            "    __flexible__: ClassVar[bool] = False",
            f"    __api_key__: ClassVar[i16] = i16({self.schema['apiKey']})",
            f"    __header_schema__: ClassVar[type[{self._header()}]] = {self._header()}",
        ]
        for spec in fields:
            if not versions_match(spec.get("versions") or spec.get("taggedVersions"), self.version):
                continue
            if spec.get("taggedVersions") is not None:
                raise SchemaError(f"{name}.{spec['name']}: tagged fields are not supported")
            lines.append(self._field(spec))
            if spec.get("about"):
                lines.append(f'    """{spec["about"]}"""')
        self.classes.append("\n".join(lines))

    def _header(self) -> str:
        return "RequestHeader" if self.kind == "request" else "ResponseHeader"

    def _nullable(self, spec: dict[str, Any]) -> bool:
        return versions_match(spec.get("nullableVersions"), self.version)

    def _field(self, spec: dict[str, Any]) -> str:
        name, kind = spec["name"], spec["type"]
        if kind.startswith("[]"):
            return self._array(spec, kind[2:])
        if kind[0].isupper():  # a nested entity
            self._struct(kind, spec)
            nullable = self._nullable(spec)
            default = " = field(default=None)" if spec.get("default") == "null" else ""
            return f"    {snake_case(name)}: {kind}{' | None' if nullable else ''}{default}"
        kind, name = _special(name, kind)
        nullable = kind not in _NUMBERS and (
            self._nullable(spec) or (kind == "datetime_i64" and spec.get("default") == "-1")
        )
        custom = self._custom(spec)
        hint = custom or self.hint(_PRIMITIVE_HINTS[kind])
        if nullable or kind == "uuid":
            hint += " | None"
        arguments = [f"metadata={{'kafka_type': {kind!r}}}"]
        if "default" in spec:
            arguments.append(f"default={self._default(kind, spec['default'], custom)}")
        return f"    {snake_case(name)}: {hint} = field({', '.join(arguments)})"

    def _array(self, spec: dict[str, Any], item: str) -> str:
        optional = " | None" if self._nullable(spec) else ""
        if item[0].isupper():
            self._struct(item, spec)
            return f"    {snake_case(spec['name'])}: tuple[{item}, ...]{optional}"
        hint = self._custom(spec) or self.hint(_PRIMITIVE_HINTS[item])
        default = "None" if spec.get("default") == "null" else "()"
        return (
            f"    {snake_case(spec['name'])}: tuple[{hint}, ...]{optional}"
            f" = field(metadata={{'kafka_type': {item!r}}}, default={default})"
        )

    def _struct(self, name: str, spec: dict[str, Any]) -> None:
        fields = spec.get("fields")
        if fields is None:  # a common struct, defined once at the top of the schema
            common = {s["name"]: s for s in self.schema.get("commonStructs", ())}
            fields = common[name]["fields"]
        self.entity(name, fields)

    def _custom(self, spec: dict[str, Any]) -> str | None:
        entity_type = spec.get("entityType")
        if entity_type is None:
            return None
        name = entity_type[0].upper() + entity_type[1:]
        self.imports.add(f"from kio.schema.types import {name}")
        return str(name)

    def _default(self, kind: str, value: object, custom: str | None) -> str:
        if value == "null":
            return "None"
        if kind == "string":
            return f"{custom}({value!r})" if custom else repr(value)
        if kind == "bool":
            return str(str(value).capitalize() == "True")
        if kind == "error_code":
            return f"ErrorCode({value})"
        if kind in ("timedelta_i32", "timedelta_i64"):
            self.imports.add(_IMPORTS["datetime"])
            hint = _PRIMITIVE_HINTS[kind]
            return f"{hint}.parse(datetime.timedelta(milliseconds={int(str(value))}))"
        if kind == "datetime_i64" and value == "-1":
            return "None"
        if kind in _NUMBERS - {"float64"}:
            return f"{custom or _PRIMITIVE_HINTS[kind]}({int(str(value), 0)})"
        raise SchemaError(f"no default of {kind} from {value!r}")

    def source(self, file_name: str) -> str:
        header = "request_header.v1" if self.kind == "request" else "response_header.v0"
        imports = {
            "from dataclasses import dataclass, field",
            "from typing import ClassVar",
            f"from kio.schema.{header}.header import {self._header()}",
            "from kio.static.constants import EntityType",
            _IMPORTS["i16"],
            *self.imports,
        }
        return "\n\n\n".join(
            [
                f'"""Generated by samsa.protocol.legacy.generate from Kafka 3.9\'s\n'
                f'clients/src/main/resources/common/message/{file_name}: do not edit."""\n\n'
                + "\n".join(sorted(imports)),
                *self.classes,
            ]
        )


def _special(name: str, kind: str) -> tuple[str, str]:
    """kio's renamings: durations and timestamps lose their "Ms", error codes get a type."""
    if name in _ERROR_CODE_NAMES:
        return "error_code", name
    if name in _TIMEDELTA_NAMES:
        return ("timedelta_i32" if kind == "int32" else "timedelta_i64"), name.removesuffix("Ms")
    if name in _DATETIME_NAMES:
        return "datetime_i64", name.removesuffix("Ms")
    if name.endswith("Ms"):
        raise SchemaError(f"{name} looks like a time field kio would rename: add it to a list")
    return kind, name


def generate_module(schema: dict[str, Any], version: int, file_name: str) -> str:
    """The source of one version's module of one schema."""
    if versions_match(schema["flexibleVersions"], version):
        raise SchemaError(f"{schema['name']} v{version} is flexible: not supported")
    if not versions_match(schema["validVersions"], version):
        raise SchemaError(f"{schema['name']} has no v{version}")
    module = _Module(schema, version)
    # Each class is appended after the classes it uses, so the module defines them first.
    module.entity(schema["name"], schema["fields"], top_level=True)
    return module.source(file_name)


def generate(source: Path, target: Path) -> list[Path]:
    """Write every module of `WANTED` and the index under `target`; the paths written."""
    written = []
    index = []
    for api, wanted in WANTED.items():
        schemas = {}
        for kind in ("Request", "Response"):
            schemas[kind] = load_schema(source / f"{api}{kind}.json")
        api_key = schemas["Request"]["apiKey"]
        for version in wanted:
            package = target / snake_case(api) / f"v{version}"
            package.mkdir(parents=True, exist_ok=True)
            for init in (package.parent / "__init__.py", package / "__init__.py"):
                init.write_text("")
                written.append(init)
            for kind, schema in schemas.items():
                path = package / f"{kind.lower()}.py"
                path.write_text(generate_module(schema, version, f"{api}{kind}.json") + "\n")
                written.append(path)
            module = f"samsa.protocol.legacy.{snake_case(api)}.v{version}"
            index.append(
                f"    ({api_key}, {version}): (\n"
                f'        "{module}.request:{schemas["Request"]["name"]}",\n'
                f'        "{module}.response:{schemas["Response"]["name"]}",\n'
                "    ),"
            )
    path = target / "index.py"
    path.write_text(
        '"""Generated by samsa.protocol.legacy.generate: do not edit.\n\n'
        '(api key, version) -> the request and response classes, as "module:name"."""\n\n'
        "INDEX: dict[tuple[int, int], tuple[str, str]] = {\n" + "\n".join(index) + "\n}\n"
    )
    written.append(path)
    return written


def format_files(paths: list[Path]) -> None:
    """ruff's import sorting and format, with the repository's settings wherever the files are."""
    ruff = Path(sys.executable).parent / "ruff"
    config = ["--config", str(PACKAGE.parents[3] / "pyproject.toml")]
    names = [str(p) for p in paths]
    fix = [str(ruff), "check", *config, "--fix", "--select", "I,F401", "-q", *names]
    subprocess.run(fix, check=False)  # nothing left to fix is not an error
    subprocess.run([str(ruff), "format", *config, "-q", *names], check=True)


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    format_files(generate(source, PACKAGE))


if __name__ == "__main__":
    main()
