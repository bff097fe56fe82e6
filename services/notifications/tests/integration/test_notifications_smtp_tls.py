"""TLS clause: production takes any SMTP server with STARTTLS or implicit TLS and authentication.

Both senders (`SmtpMailer.send`, aiosmtplib; `bulk_mail.send_file`, smtplib) against real aiosmtpd
servers started here: one requiring STARTTLS and AUTH, one speaking implicit TLS, each with a
certificate from a throwaway CA made in the test. Certificate and host-name verification are on.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr, ValidationError

from devstack.processes import free_port
from notifications.bulk_mail import send_file
from notifications.mailer import SmtpConfigurationError, SmtpMailer, tls_context
from notifications.settings import SmtpSettings
from shared.telemetry import create_telemetry

pytestmark = pytest.mark.integration

USER = "quittance-mailer"
PASSWORD = "a long SMTP passphrase"
SENDER = "no-reply@quittance.example"
RECIPIENT = "customer@example.org"
CA_NAME = "Quittance throwaway test CA"


# --- a throwaway PKI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA bundle (PEM) and the server certificate chains it signed."""

    ca_file: Path
    server_cert: Path  # for localhost and 127.0.0.1 (the leaf alone, as servers send it)
    server_key: Path
    wrong_name_cert: Path  # for mail.elsewhere.example only, same key
    unknown_ca_file: Path  # another CA, which signed nothing of the servers'


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name("quittance test mail server"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca(CA_NAME)
    _, other_ca_cert = _ca("Some other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    good = _server_cert(
        ca_key,
        ca_cert,
        server_key,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    wrong_name = _server_cert(ca_key, ca_cert, server_key, [x509.DNSName("mail.elsewhere.example")])
    paths = Pki(
        ca_file=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        wrong_name_cert=folder / "wrong-name.pem",
        unknown_ca_file=folder / "other-ca.pem",
    )
    paths.ca_file.write_bytes(_pem(ca_cert))
    paths.unknown_ca_file.write_bytes(_pem(other_ca_cert))
    paths.server_cert.write_bytes(_pem(good))
    paths.wrong_name_cert.write_bytes(_pem(wrong_name))
    paths.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- real SMTP servers ----------------------------------------------------------------------


@dataclass
class Recorder:
    """aiosmtpd handler keeping what arrived: envelopes, and the logins it was offered."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        assert envelope.mail_from is not None
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        accepted = user == USER and auth_data.password.decode() == PASSWORD
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)  # aiosmtpd answers 235 or 535


@dataclass
class Server:
    """A running aiosmtpd server and what it received."""

    port: int
    recorder: Recorder


@contextmanager
def _serving(**options: Any) -> Iterator[Server]:
    recorder = Recorder()
    port = free_port()
    if options.pop("auth", False):
        options["authenticator"] = recorder.authenticate
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ready_timeout=10.0, **options
    )
    controller.start()
    try:
        yield Server(port, recorder)
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(pki: Pki) -> Iterator[Server]:
    """Plaintext first; nothing but STARTTLS before the upgrade; AUTH only after it."""
    with _serving(
        tls_context=_server_context(pki.server_cert, pki.server_key),
        require_starttls=True,
        auth=True,
        auth_require_tls=True,
    ) as server:
        yield server


@pytest.fixture
def implicit_tls_server(pki: Pki) -> Iterator[Server]:
    """TLS from the first byte (port 465 style), with AUTH.

    aiosmtpd counts only a STARTTLS upgrade as TLS for `auth_require_tls`, so it is off here:
    the whole connection is TLS anyway.
    """
    with _serving(
        ssl_context=_server_context(pki.server_cert, pki.server_key),
        auth=True,
        auth_require_tls=False,
    ) as server:
        yield server


@pytest.fixture
def wrong_name_server(pki: Pki) -> Iterator[Server]:
    """STARTTLS with a certificate from the trusted CA, but for another host name."""
    with _serving(
        tls_context=_server_context(pki.wrong_name_cert, pki.server_key),
        require_starttls=True,
        auth=True,
        auth_require_tls=True,
    ) as server:
        yield server


@pytest.fixture
def plain_server() -> Iterator[Server]:
    """A local catcher: no TLS, no AUTH (the default settings' server)."""
    with _serving() as server:
        yield server


# --- the two senders ------------------------------------------------------------------------

SENDERS = ["mailer", "bulk_mail"]
# What a failed verification surfaces as: ssl's own error, or aiosmtplib's for implicit TLS.
CERTIFICATE_REFUSED = (ssl.SSLCertVerificationError, aiosmtplib.SMTPConnectError)


def _mime(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message.set_content("Your invoice is attached.\n.a line starting with a dot\nRegards\n")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


async def _send(via: str, settings: SmtpSettings, mime: bytes, tmp_path: Path) -> None:
    if via == "mailer":
        mailer = SmtpMailer(settings, create_telemetry("notifications"))
        await mailer.send(sender=SENDER, recipient=RECIPIENT, mime=mime)
    else:
        path = tmp_path / "composed.eml"
        path.write_bytes(mime)
        await asyncio.to_thread(send_file, settings, sender=SENDER, recipient=RECIPIENT, path=path)


def _tls_settings(server: Server, **fields: Any) -> SmtpSettings:
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": USER,
        "password": SecretStr(PASSWORD),
        "timeout_s": 10.0,
    }
    return SmtpSettings(**(defaults | fields))


def _assert_delivered(server: Server, mime: bytes) -> None:
    assert len(server.recorder.received) == 1
    mail_from, rcpt_tos, raw = server.recorder.received[0]
    assert (mail_from, rcpt_tos) == (SENDER, [RECIPIENT])
    assert raw.rstrip(b"\r\n") == mime.rstrip(b"\r\n")


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_starttls_with_auth_delivers(
    via: str, host: str, starttls_server: Server, pki: Pki, tmp_path: Path
) -> None:
    """TLS: STARTTLS, then AUTH, then the message, trusting the private CA of `ca_file`; the
    certificate names the host by IP address and by DNS name."""
    mime = _mime(f"STARTTLS via {via} to {host}")
    settings = _tls_settings(starttls_server, host=host, start_tls=True, ca_file=str(pki.ca_file))
    await _send(via, settings, mime, tmp_path)
    _assert_delivered(starttls_server, mime)
    assert starttls_server.recorder.logins == [(USER, True)]


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_implicit_tls_with_auth_delivers(
    via: str, implicit_tls_server: Server, pki: Pki, tmp_path: Path
) -> None:
    """TLS: implicit TLS (use_tls), then AUTH, then the message."""
    mime = _mime(f"implicit TLS via {via}")
    settings = _tls_settings(implicit_tls_server, use_tls=True, ca_file=str(pki.ca_file))
    await _send(via, settings, mime, tmp_path)
    _assert_delivered(implicit_tls_server, mime)
    assert implicit_tls_server.recorder.logins == [(USER, True)]


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_wrong_password_raises_and_delivers_nothing(
    via: str, starttls_server: Server, pki: Pki, tmp_path: Path
) -> None:
    """TLS: the server refuses the login: an SMTP authentication error, no message."""
    settings = _tls_settings(
        starttls_server,
        start_tls=True,
        ca_file=str(pki.ca_file),
        password=SecretStr("not the passphrase"),
    )
    with pytest.raises((aiosmtplib.SMTPAuthenticationError, smtplib.SMTPAuthenticationError)):
        await _send(via, settings, _mime("wrong password"), tmp_path)
    # Each client tries every mechanism it shares with the server (PLAIN, LOGIN): all refused.
    assert starttls_server.recorder.logins
    assert set(starttls_server.recorder.logins) == {(USER, False)}
    assert starttls_server.recorder.received == []


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
@pytest.mark.parametrize("mode", ["start_tls", "use_tls"])
async def test_tls_certificate_of_an_untrusted_ca_is_refused(
    via: str,
    mode: str,
    starttls_server: Server,
    implicit_tls_server: Server,
    pki: Pki,
    tmp_path: Path,
) -> None:
    """TLS: verification is on: without `ca_file` (the system's trust store) or with another
    CA's bundle, the throwaway CA's certificate fails verification; no login, no message."""
    server = starttls_server if mode == "start_tls" else implicit_tls_server
    for ca_file in (None, str(pki.unknown_ca_file)):
        settings = _tls_settings(server, ca_file=ca_file, **{mode: True})
        with pytest.raises(CERTIFICATE_REFUSED, match="CERTIFICATE_VERIFY_FAILED"):
            await _send(via, settings, _mime("untrusted"), tmp_path)
    assert server.recorder.logins == []
    assert server.recorder.received == []


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_certificate_for_another_host_name_is_refused(
    via: str, wrong_name_server: Server, pki: Pki, tmp_path: Path
) -> None:
    """TLS: host-name verification is on: a trusted CA's certificate for another name fails."""
    settings = _tls_settings(wrong_name_server, start_tls=True, ca_file=str(pki.ca_file))
    with pytest.raises(CERTIFICATE_REFUSED, match=r"CERTIFICATE_VERIFY_FAILED.*mismatch"):
        await _send(via, settings, _mime("wrong name"), tmp_path)
    assert wrong_name_server.recorder.logins == []
    assert wrong_name_server.recorder.received == []


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_start_tls_never_falls_back_to_plaintext(
    via: str, plain_server: Server, pki: Pki, tmp_path: Path
) -> None:
    """TLS: start_tls against a server without STARTTLS fails rather than goes on in clear."""
    settings = _tls_settings(plain_server, start_tls=True, ca_file=str(pki.ca_file))
    with pytest.raises((aiosmtplib.SMTPException, smtplib.SMTPException)):
        await _send(via, settings, _mime("no STARTTLS offered"), tmp_path)
    assert plain_server.recorder.received == []


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_username_over_plaintext_is_refused_before_connecting(
    via: str, tmp_path: Path
) -> None:
    """TLS: a username without start_tls or use_tls raises before any connection is made."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        settings = SmtpSettings(
            host="127.0.0.1",
            port=listener.getsockname()[1],
            username=USER,
            password=SecretStr(PASSWORD),
            timeout_s=2.0,
        )
        with pytest.raises(SmtpConfigurationError, match="encrypted connection"):
            await _send(via, settings, _mime("plaintext auth"), tmp_path)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


@pytest.mark.clause("TLS")
@pytest.mark.parametrize("via", SENDERS)
async def test_tls_defaults_still_deliver_to_a_local_catcher(
    via: str, plain_server: Server, tmp_path: Path
) -> None:
    """TLS: the default settings (no TLS, no AUTH: the local catcher) deliver as before."""
    mime = _mime(f"plain via {via}")
    await _send(via, SmtpSettings(host="127.0.0.1", port=plain_server.port), mime, tmp_path)
    _assert_delivered(plain_server, mime)


@pytest.mark.clause("TLS")
def test_tls_context_always_verifies(pki: Pki) -> None:
    """TLS: the one context both senders use verifies certificate and host name, and with
    `ca_file` trusts that bundle instead of the system's."""
    for settings in (SmtpSettings(), SmtpSettings(start_tls=True, ca_file=str(pki.ca_file))):
        context = tls_context(settings)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
    own = tls_context(SmtpSettings(ca_file=str(pki.ca_file))).get_ca_certs()
    assert [cert["subject"] for cert in own] == [
        ((("commonName", "Quittance throwaway test CA"),),)
    ]


@pytest.mark.clause("TLS")
def test_tls_settings_reject_start_tls_with_use_tls() -> None:
    """TLS: STARTTLS and implicit TLS are exclusive."""
    with pytest.raises(ValidationError, match="start_tls and use_tls are exclusive"):
        SmtpSettings(start_tls=True, use_tls=True)


@pytest.mark.clause("TLS")
def test_tls_settings_reject_half_credentials() -> None:
    """TLS: a username without a password, or a password without a username, is an error."""
    with pytest.raises(ValidationError, match="the username has no password"):
        SmtpSettings(start_tls=True, username=USER)
    with pytest.raises(ValidationError, match="the password has no user"):
        SmtpSettings(start_tls=True, password=SecretStr(PASSWORD))
    assert SmtpSettings(start_tls=True, username=USER, password=SecretStr(PASSWORD)).username
