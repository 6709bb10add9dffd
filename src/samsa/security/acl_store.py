"""The ACLs of a data dir: `acls.json`, rewritten whole and atomically on each change.

Kafka keeps ACLs in its metadata log; samsa, one node, keeps them in one file written with
`Storage.write_atomic` (write, fsync, rename, fsync the directory), so after `kill -9` the file
holds the ACLs before or after a change, never a mix. A CreateAcls or DeleteAcls is answered
only once its file is written (the write is synchronous, a few hundred microseconds).

The same file is what `samsa acl` edits on a stopped broker's data dir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from samsa.log.storage import Storage
from samsa.security.acl import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclSource,
    PatternType,
    Permission,
    ResourceType,
)

ACLS_FILE = "acls.json"
# A limit on everything: more ACLs than this is a mistake, and each decision scans them.
ACLS_MAX = 100_000


class AclStoreError(Exception):
    """The ACL file cannot be read (damaged, or written by something else). Raised by
    `AclStore.load`; the broker refuses to start rather than serve without its ACLs."""


class AclStore(AclSource):
    def __init__(self, storage: Storage, data_dir: str) -> None:
        self.storage = storage
        self.path = os.path.join(data_dir, ACLS_FILE)
        self._acls: frozenset[AclBinding] = frozenset()

    def bindings(self) -> Iterable[AclBinding]:
        return self._acls

    def load(self) -> None:
        raw = self.storage.read_all(self.path)
        if not raw:
            self._acls = frozenset()
            return
        try:
            self._acls = frozenset(_decode(entry) for entry in json.loads(raw)["acls"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AclStoreError(f"{self.path} is damaged: {exc!r}") from None

    def add(self, acls: Iterable[AclBinding]) -> None:
        """Add these ACLs (those already present stay once) and write the file."""
        merged = self._acls | frozenset(acls)
        if len(merged) > ACLS_MAX:
            raise AclStoreError(f"more than {ACLS_MAX} ACLs")
        self._save(merged)

    def remove(self, filters: Iterable[AclFilter]) -> list[list[AclBinding]]:
        """Remove every ACL matching each filter and write the file; for each filter, the ACLs
        it matched (an ACL matched by two filters is listed under both, as in Kafka)."""
        matched = [sorted(acl for acl in self._acls if f.matches(acl)) for f in filters]
        gone = frozenset(acl for acls in matched for acl in acls)
        if gone:
            self._save(self._acls - gone)
        return matched

    def _save(self, acls: frozenset[AclBinding]) -> None:
        data = {"version": 1, "acls": [_encode(acl) for acl in sorted(acls)]}
        self.storage.write_atomic(self.path, json.dumps(data, indent=1).encode())
        self._acls = acls


def _encode(acl: AclBinding) -> dict[str, str]:
    return {
        "resource_type": acl.resource_type.name,
        "resource_name": acl.resource_name,
        "pattern_type": acl.pattern_type.name,
        "principal": acl.principal,
        "host": acl.host,
        "operation": acl.operation.name,
        "permission": acl.permission.name,
    }


def _decode(entry: dict[str, str]) -> AclBinding:
    return AclBinding(
        ResourceType[entry["resource_type"]],
        str(entry["resource_name"]),
        PatternType[entry["pattern_type"]],
        str(entry["principal"]),
        str(entry["host"]),
        AclOperation[entry["operation"]],
        Permission[entry["permission"]],
    )
