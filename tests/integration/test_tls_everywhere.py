"""TLS: every HTTP service and the ops dashboard, started as `make up TLS=1` starts them (each
with its own `serve` command and a certificate from the run's local authority), serve HTTPS
with TLS 1.2 or newer only, send HSTS, and read each other over HTTPS."""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port, wait_until
from devstack.stack import SERVICES, Stack, StackPorts

# A stack of its own, started in TLS mode: a run of a minute, in `make test-system`.
pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.clause("TLS")]
SERVERS = [spec.name for spec in SERVICES] + ["ops"]


@pytest.fixture(scope="module")
def https_stack(infrastructure: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The four services and the dashboard in TLS mode, on the session's servers."""
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("tls-stack"),
        ports=StackPorts(dashboard=free_port()),
        postgres_admin_url=infrastructure.admin_url(),
        kafka_bootstrap=infrastructure.bootstrap_servers,
        service_ports={spec.name: free_port() for spec in SERVICES},
        topic_prefix=f"tls{uuid.uuid4().hex[:8]}.",
        database_suffix=f"_tls{uuid.uuid4().hex[:6]}",
        tls=True,
    )
    try:
        stack.start_services()
        stack.start_dashboard()
        yield stack
    finally:
        stack.stop()


def _port(stack: Stack, server: str) -> int:
    return stack.ports.dashboard if server == "ops" else stack.service_ports[server]


@pytest.mark.parametrize("server", SERVERS)
def test_tls_every_server_answers_over_https_with_hsts(https_stack: Stack, server: str) -> None:
    url = f"https://127.0.0.1:{_port(https_stack, server)}/healthz"
    answer = httpx.get(url, verify=https_stack.verify(), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    # The certificate is checked: a client that does not trust the run's authority is refused.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url, timeout=10)
    # Plain HTTP on the same port gets no answer at all.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{_port(https_stack, server)}/healthz", timeout=10)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_2_is_accepted_and_older_versions_are_refused(
    https_stack: Stack, server: str
) -> None:
    ca = https_stack.authority.ca_file
    port = _port(https_stack, server)

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


def test_tls_the_dashboard_reads_every_service_over_https(https_stack: Stack) -> None:
    """The dashboard's health panel shows the four services up: it reached each over HTTPS,
    trusting the run's authority and nothing else."""
    base = https_stack.dashboard_url
    with httpx.Client(base_url=base, verify=https_stack.verify(), timeout=10) as dashboard:
        signed_in = dashboard.post(
            "/sign-in",
            data={
                "email": https_stack.enrol_operations_staff(),
                "password": https_stack.dashboard_password,
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        assert [c.secure for c in dashboard.cookies.jar] == [True], "the cookie is not Secure"

        def all_reached() -> bool:
            state = dashboard.get("/api/state")
            assert state.status_code == 200, state.text
            status = {row["service"]: row["status"] for row in state.json()["services"]}
            return all(status.get(spec.name) not in (None, "unreachable") for spec in SERVICES)

        wait_until(all_reached, timeout=30, what="the dashboard to reach the four services")


def test_tls_the_authority_is_made_once_per_folder(tmp_path: Path) -> None:
    """`make up TLS=1` keeps its authority between runs, so a browser trusts it once."""
    from devstack.stack import LocalAuthority

    first = LocalAuthority.create(tmp_path)
    ca = first.ca_file.read_bytes()
    again = LocalAuthority.create(tmp_path)
    assert again.ca_file.read_bytes() == ca
    assert first.server_file.stat().st_mode & 0o077 == 0  # the key is the owner's alone
