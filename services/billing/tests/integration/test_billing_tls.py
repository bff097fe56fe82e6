"""TLS: billing serves HTTPS with TLS 1.2 or newer only, and sends HSTS."""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from billing.settings import BillingSettings
from devstack.processes import ManagedProcess, free_port, wait_until
from shared.signing import SigningKey

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def https_billing(
    billing_settings: BillingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """`python -m billing.main serve` with a certificate from a throwaway CA."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    port = free_port()
    env = {
        "BILLING_ENVIRONMENT": "test",
        "BILLING_DATABASE_URL": billing_settings.database_url,
        "BILLING_KAFKA__BOOTSTRAP_SERVERS": billing_settings.kafka.bootstrap_servers,
        "BILLING_KAFKA__TOPIC_PREFIX": billing_settings.kafka.topic_prefix,
        "BILLING_KEYSTORE__URL": billing_settings.keystore.url,
        "BILLING_KEYSTORE__MASTER_KEY": "tls-test-keystore-master-key",
        "BILLING_AUDIT_TOKEN_SIGNING_KEY": SigningKey.generate().private_pem(),
        "BILLING_OPERATOR_TOKEN": "tls-test-operator-token",
        "BILLING_TLS_CERTFILE": str(folder / "server.pem"),
        "BILLING_TLS_KEYFILE": str(folder / "server.pem"),
        "BILLING_EXPORT_STORE_PATH": str(folder),
    }
    server = ManagedProcess(
        "billing-https",
        [sys.executable, "-m", "billing.main", "serve", "--port", str(port)],
        log_path=folder / "billing.log",
        env=env,
    )
    server.start()
    try:
        wait_until(lambda: _accepts(port, server), timeout=60, what="billing over HTTPS")
        yield port, folder / "ca.pem"
    finally:
        server.stop()


def _accepts(port: int, server: ManagedProcess) -> bool:
    if not server.alive():
        raise RuntimeError(f"billing exited:\n{server.tail()}")
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_tls_https_is_served_with_hsts(https_billing: tuple[int, Path]) -> None:
    port, ca = https_billing
    response = httpx.get(
        f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=str(ca))
    )
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_2_is_accepted_and_older_versions_are_refused(
    https_billing: tuple[int, Path],
) -> None:
    port, ca = https_billing

    def handshake(version: ssl.TLSVersion) -> str | None:
        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
        context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old protocols at all
        with socket.create_connection(("127.0.0.1", port)) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    return tls.version()
            except ssl.SSLError:
                return None

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(ssl.TLSVersion.TLSv1_1) is None
    assert handshake(ssl.TLSVersion.TLSv1) is None
