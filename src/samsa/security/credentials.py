"""SCRAM credentials, salted and hashed, in the data dir (`scram-credentials.json`).

Kafka keeps, per user and mechanism, the salt, iteration count, StoredKey and ServerKey of RFC
5802; never the password. samsa stores the same. SASL/PLAIN is checked against them too: the
password is salted and hashed with a stored credential's salt and iterations, and its StoredKey
compared (Kafka's PLAIN reads plain-text passwords from its JAAS file instead; samsa keeps no
password anywhere). A user added with a password gets credentials for both SCRAM mechanisms.

Limits as Kafka's (`ScramMechanism`): 4096 to 16384 iterations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from samsa.log.storage import Storage

FILE = "scram-credentials.json"
SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka's ScramMechanism codes, as DescribeUserScramCredentials and AlterUserScramCredentials
# carry them.
MECHANISM_CODES = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
ITERATIONS_MIN = 4096
ITERATIONS_MAX = 16384
DEFAULT_ITERATIONS = 8192  # what kafka-configs' docs use
SALT_BYTES = 32


class CredentialsError(ValueError):
    """The credentials file is damaged: the broker refuses to start rather than lose users."""


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def from_salted_password(
    mechanism: str, salt: bytes, salted_password: bytes, iterations: int
) -> ScramCredential:
    """RFC 5802's keys from SaltedPassword (what AlterUserScramCredentials sends)."""
    digest = SCRAM_MECHANISMS[mechanism]
    client_key = hmac.digest(salted_password, b"Client Key", digest)
    return ScramCredential(
        salt,
        hashlib.new(digest, client_key).digest(),
        hmac.digest(salted_password, b"Server Key", digest),
        iterations,
    )


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    digest = SCRAM_MECHANISMS[mechanism]
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)


def from_password(
    mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredential:
    salt = secrets.token_bytes(SALT_BYTES)
    return from_salted_password(
        mechanism, salt, salted_password(mechanism, password, salt, iterations), iterations
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CredentialStore:
    """Every user's SCRAM credentials; each change is written (atomically) before it returns."""

    def __init__(self, storage: Storage, data_dir: str) -> None:
        self._storage = storage
        self._path = os.path.join(data_dir, FILE)
        self.users: dict[str, dict[str, ScramCredential]] = {}

    def load(self) -> None:
        data = self._storage.read_all(self._path)
        if data is None:
            return
        try:
            document = json.loads(data)
            self.users = {
                user: {
                    mechanism: ScramCredential(
                        base64.b64decode(c["salt"]),
                        base64.b64decode(c["stored_key"]),
                        base64.b64decode(c["server_key"]),
                        int(c["iterations"]),
                    )
                    for mechanism, c in mechanisms.items()
                    if mechanism in SCRAM_MECHANISMS
                }
                for user, mechanisms in document["users"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CredentialsError(f"{self._path} is damaged: {exc!r}") from None

    def _save(self) -> None:
        document = {
            "version": 1,
            "users": {
                user: {
                    mechanism: {
                        "salt": _b64(c.salt),
                        "stored_key": _b64(c.stored_key),
                        "server_key": _b64(c.server_key),
                        "iterations": c.iterations,
                    }
                    for mechanism, c in mechanisms.items()
                }
                for user, mechanisms in sorted(self.users.items())
            },
        }
        self._storage.write_atomic(self._path, json.dumps(document, indent=1).encode())

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.users.get(user, {}).get(mechanism)

    def apply(
        self,
        upserts: list[tuple[str, str, ScramCredential]],
        deletions: list[tuple[str, str]],
    ) -> None:
        """Set and remove (user, mechanism) credentials, then write them all at once."""
        for user, mechanism in deletions:
            mechanisms = self.users.get(user, {})
            mechanisms.pop(mechanism, None)
            if not mechanisms:
                self.users.pop(user, None)
        for user, mechanism, credential in upserts:
            self.users.setdefault(user, {})[mechanism] = credential
        self._save()

    def check_password(self, user: str, password: str) -> bool:
        """SASL/PLAIN: does `password` hash to one of `user`'s stored keys?"""
        for mechanism, stored in self.users.get(user, {}).items():
            salted = salted_password(mechanism, password, stored.salt, stored.iterations)
            candidate = from_salted_password(mechanism, stored.salt, salted, stored.iterations)
            return hmac.compare_digest(candidate.stored_key, stored.stored_key)
        # An unknown user costs the same hashing, so timing does not tell users apart.
        salted_password("SCRAM-SHA-256", password, b"\0" * SALT_BYTES, DEFAULT_ITERATIONS)
        return False
