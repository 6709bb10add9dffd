"""SCRAM credentials through Kafka's APIs (KIP-554): DescribeUserScramCredentials and
AlterUserScramCredentials; and SaslHandshake/SaslAuthenticate reaching the broker, which only
happens on a listener without SASL or after authentication (Kafka's ILLEGAL_SASL_STATE).

AlterUserScramCredentials carries the salt and SaltedPassword the client computed; the broker
derives StoredKey and ServerKey from them and keeps only those (`samsa.security.credentials`).
Errors and messages as Kafka's `ControllerApis`/`ScramControlManager`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.alter_user_scram_credentials.v0.request import AlterUserScramCredentialsRequest
from kio.schema.alter_user_scram_credentials.v0.response import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
)
from kio.schema.describe_user_scram_credentials.v0.response import (
    CredentialInfo,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2 import SaslAuthenticateRequest, SaslAuthenticateResponse
from kio.schema.sasl_handshake.v1 import SaslHandshakeRequest, SaslHandshakeResponse
from kio.static.primitive import i8, i32

from samsa.broker import authz
from samsa.broker.authz import Op
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.protocol.codec import Request
from samsa.security.credentials import (
    ITERATIONS_MAX,
    ITERATIONS_MIN,
    MECHANISM_CODES,
    ScramCredential,
    from_salted_password,
)

if TYPE_CHECKING:
    from samsa.broker.core import Broker

MECHANISM_NAMES = {code: name for name, code in MECHANISM_CODES.items()}


def handle_sasl_handshake(broker: Broker, request: Request[SaslHandshakeRequest]) -> Outcome:
    return reply(
        request, SaslHandshakeResponse(error_code=ErrorCode.illegal_sasl_state, mechanisms=())
    )


def handle_sasl_authenticate(broker: Broker, request: Request[SaslAuthenticateRequest]) -> Outcome:
    return reply(
        request,
        SaslAuthenticateResponse(
            error_code=ErrorCode.illegal_sasl_state,
            error_message="SaslAuthenticate request received after successful authentication",
            auth_bytes=b"",
        ),
    )


def _described(user: str, broker: Broker) -> DescribeUserScramCredentialsResult:
    mechanisms = broker.credentials.users.get(user)
    if not mechanisms:
        return DescribeUserScramCredentialsResult(
            user=user,
            error_code=ErrorCode.resource_not_found,
            error_message=f"Attempt to describe a user credential that does not exist: {user}",
            credential_infos=(),
        )
    return DescribeUserScramCredentialsResult(
        user=user,
        error_code=ErrorCode.none,
        error_message=None,
        credential_infos=tuple(
            CredentialInfo(mechanism=i8(MECHANISM_CODES[name]), iterations=i32(c.iterations))
            for name, c in sorted(mechanisms.items())
        ),
    )


def handle_describe_user_scram_credentials(
    broker: Broker, request: Request[DescribeUserScramCredentialsRequest]
) -> Outcome:
    if not authz.cluster_allowed(broker, request, Op.DESCRIBE):  # as KafkaApis
        refused = ErrorCode.cluster_authorization_failed
        return reply(
            request,
            DescribeUserScramCredentialsResponse(
                throttle_time=NO_THROTTLE,
                error_code=refused,
                error_message=authz.MESSAGES[refused],
                results=(),
            ),
        )
    asked = request.payload.users
    names = sorted(broker.credentials.users) if asked is None else [u.name for u in asked]
    results = []
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            results.append(
                DescribeUserScramCredentialsResult(
                    user=name,
                    error_code=ErrorCode.duplicate_resource,
                    error_message=(
                        "Cannot describe SCRAM credentials for the same user twice in a single "
                        f"request: {name}"
                    ),
                    credential_infos=(),
                )
            )
        else:
            results.append(_described(name, broker))
    return reply(
        request,
        DescribeUserScramCredentialsResponse(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            error_message=None,
            results=tuple(results),
        ),
    )


def _refusal(
    broker: Broker, name: str, mechanism: int, iterations: int | None, deleting: bool
) -> tuple[ErrorCode, str] | None:
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    mechanism_name = MECHANISM_NAMES.get(mechanism)
    if mechanism_name is None:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    if iterations is not None and iterations < ITERATIONS_MIN:
        return ErrorCode.unacceptable_credential, "Too few iterations"
    if iterations is not None and iterations > ITERATIONS_MAX:
        return ErrorCode.unacceptable_credential, "Too many iterations"
    if deleting and broker.credentials.get(name, mechanism_name) is None:
        return (
            ErrorCode.resource_not_found,
            "Attempt to delete a user credential that does not exist",
        )
    return None


def handle_alter_user_scram_credentials(
    broker: Broker, request: Request[AlterUserScramCredentialsRequest]
) -> Outcome:
    body = request.payload
    named = [d.name for d in body.deletions] + [u.name for u in body.upsertions]
    errors: dict[str, tuple[ErrorCode, str]] = {}
    if not authz.cluster_allowed(broker, request, Op.ALTER):  # as KafkaApis: every user refused
        refused = ErrorCode.cluster_authorization_failed
        return _altered(request, dict.fromkeys(named, (refused, authz.MESSAGES[refused])))
    for name in named:
        if named.count(name) > 1:
            errors[name] = (
                ErrorCode.duplicate_resource,
                "A user credential cannot be altered twice in the same request",
            )
    for deletion in body.deletions:
        refusal = _refusal(broker, deletion.name, deletion.mechanism, None, True)
        if refusal is not None:
            errors.setdefault(deletion.name, refusal)
    for upsertion in body.upsertions:
        refusal = _refusal(broker, upsertion.name, upsertion.mechanism, upsertion.iterations, False)
        if refusal is not None:
            errors.setdefault(upsertion.name, refusal)
    deletions = [
        (d.name, MECHANISM_NAMES[d.mechanism]) for d in body.deletions if d.name not in errors
    ]
    upserts: list[tuple[str, str, ScramCredential]] = []
    for u in body.upsertions:
        if u.name in errors:
            continue
        mechanism = MECHANISM_NAMES[u.mechanism]
        credential = from_salted_password(mechanism, u.salt, u.salted_password, u.iterations)
        upserts.append((u.name, mechanism, credential))
    if deletions or upserts:
        broker.credentials.apply(upserts, deletions)
    return _altered(request, errors, named)


def _altered(
    request: Request[AlterUserScramCredentialsRequest],
    errors: dict[str, tuple[ErrorCode, str]],
    named: list[str] | None = None,
) -> Outcome:
    results = tuple(
        AlterUserScramCredentialsResult(
            user=name,
            error_code=errors[name][0] if name in errors else ErrorCode.none,
            error_message=errors[name][1] if name in errors else None,
        )
        for name in dict.fromkeys(errors if named is None else named)
    )
    return reply(
        request, AlterUserScramCredentialsResponse(throttle_time=NO_THROTTLE, results=results)
    )
