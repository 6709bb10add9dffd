"""Throwaway certificates for tests and local use (`samsa certs create DIR`).

A CA, a server certificate for `localhost` and 127.0.0.1 (and any other names given), and a
client certificate per client name, with the `cryptography` library. Keys are not encrypted and
the CA's key is kept only in memory: these are for tests, never for production.

Files written (PEM):
- `ca.crt`: the CA certificate, every side's truststore;
- `server.pem`: the server's key and certificate chain (`ssl.keystore.location`), also as
  `server.key` and `server.crt`;
- `<client>.key` and `<client>.crt` per client, subject `CN=<client>,OU=samsa`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365


@dataclass(frozen=True, slots=True)
class CertFiles:
    directory: str
    ca: str
    server_keystore: str

    def client_cert(self, client: str) -> str:
        return os.path.join(self.directory, f"{client}.crt")

    def client_key(self, client: str) -> str:
        return os.path.join(self.directory, f"{client}.key")


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "samsa"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create(
    directory: str,
    clients: Sequence[str] = ("client",),
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
) -> CertFiles:
    """Write a fresh CA, server certificate and client certificates into `directory`."""
    os.makedirs(directory, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "samsa test CA")])
    ca = _issue(ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(True, None), True)])
    _write(os.path.join(directory, "ca.crt"), _cert_pem(ca))

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        _name(hosts[0], "broker"),
        server_key,
        ca_name,
        ca_key,
        [
            (x509.SubjectAlternativeName(names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    _write(os.path.join(directory, "server.key"), _key_pem(server_key))
    _write(os.path.join(directory, "server.crt"), _cert_pem(server) + _cert_pem(ca))
    keystore = os.path.join(directory, "server.pem")
    _write(keystore, _key_pem(server_key) + _cert_pem(server) + _cert_pem(ca))

    files = CertFiles(directory, os.path.join(directory, "ca.crt"), keystore)
    for client in clients:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            _name(client, "samsa"),
            key,
            ca_name,
            ca_key,
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        )
        _write(files.client_key(client), _key_pem(key))
        _write(files.client_cert(client), _cert_pem(cert))
    return files
