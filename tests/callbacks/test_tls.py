"""https callbacks: connect to the checked IP, but verify TLS against the URL's host name."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook

from service.callbacks import CallbackSender, DeliveryResult
from service.ssrf import IPAddress
from tests.callbacks.conftest import SECRET, Receiver, make_app
from tests.support.servers import ServerThread

CERT_HOST = "receiver.example"  # the only name the receiver's certificate is valid for


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate for CERT_HOST signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("vidhook test CA"))
        .issuer_name(_name("vidhook test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CERT_HOST))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CERT_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, Path]]:
    """An https receiver on 127.0.0.1 whose certificate names only CERT_HOST."""
    ca_path, cert_path, key_path = _write_certificates(tmp_path_factory.mktemp("tls"))
    receiver = Receiver(url="", port=0)
    server = ServerThread(make_app(receiver))
    # ServerThread has no TLS switch; uvicorn reads these when the server starts.
    server.server.config.ssl_certfile = str(cert_path)
    server.server.config.ssl_keyfile = str(key_path)
    receiver.url, receiver.port = f"https://127.0.0.1:{server.port}", server.port
    with server:
        yield receiver, ca_path


class Loopback:
    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]


def deliver_tls(url: str, ca_path: Path) -> DeliveryResult:
    async def run() -> DeliveryResult:
        context = ssl.create_default_context(cafile=str(ca_path))
        async with httpx.AsyncClient(verify=context, trust_env=False) as client:
            sender = CallbackSender(
                client, SECRET, allow_private_targets=True, resolver=Loopback(), timeout_s=5
            )
            return await sender.send(url, message_id="msg_tls", payload=b'{"ok": true}')

    return asyncio.run(run())


def test_https_verifies_certificate_for_url_host_while_connecting_to_ip(
    tls_receiver: tuple[Receiver, Path],
) -> None:
    receiver, ca_path = tls_receiver
    receiver.requests.clear()

    result = deliver_tls(f"https://{CERT_HOST}:{receiver.port}/hook", ca_path)

    assert result.delivered, result.detail
    [request] = receiver.requests
    assert request.headers["host"] == f"{CERT_HOST}:{receiver.port}"
    assert request.server == ("127.0.0.1", receiver.port)
    # Never kept alive: the pool would key a reused connection by IP, not by name.
    assert request.headers["connection"] == "close"
    Webhook(SECRET).verify(request.body, request.headers)


def test_https_certificate_for_another_name_is_not_accepted(
    tls_receiver: tuple[Receiver, Path],
) -> None:
    receiver, ca_path = tls_receiver
    receiver.requests.clear()

    # Same IP, same certificate, but the URL names a host the certificate does not cover.
    result = deliver_tls(f"https://impostor.example:{receiver.port}/hook", ca_path)

    assert not result.delivered
    assert result.retryable
    assert result.status_code is None
    assert receiver.requests == []
