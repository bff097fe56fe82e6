"""The ops dashboard in headless Chromium: what operations staff see while invoices are issued
and an account is terminated (issue 12)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from playwright.async_api import Dialog, async_playwright, expect

from devstack.processes import free_port
from devstack.stack import OPERATIONS_STAFF_EMAIL, SERVICES, Stack
from devstack.testing import (
    CHROMIUM_FLAGS,
    MailCatcher,
    artifacts_dir,
    chromium_executable,
    eventually,
    produce,
)

pytestmark = [pytest.mark.e2e, pytest.mark.system]  # `make test-system`
OWNER_PASSWORD = "the dashboard test owner's passphrase"
RETENTION_OPERATOR_TOKEN = "dev-only-operator-token"  # retention's development default


@pytest.fixture(scope="module")
def dashboard(system: Stack) -> Iterator[str]:
    """The dashboard as `make up` starts it, reading the four end-to-end services."""
    system.ports.dashboard = free_port()
    system.enrol_operations_staff()
    system.start_dashboard()
    try:
        yield system.dashboard_url
    finally:
        system.stop_dashboard()


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium; CI installs it and sets QUITTANCE_REQUIRE_BROWSER so it never skips."""
    executable = chromium_executable()
    if executable is None:
        if os.environ.get("QUITTANCE_REQUIRE_BROWSER"):
            pytest.fail("QUITTANCE_REQUIRE_BROWSER is set but Chromium is not installed")
        pytest.skip(
            "the dashboard's browser test cannot run here: Chromium is not installed "
            "(apt-get install chromium, or set QUITTANCE_CHROMIUM)"
        )
    return executable


async def _sagas(system: Stack) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        listed = await client.get(
            f"{system.service_url('retention')}/sagas",
            headers={"authorization": f"Bearer {RETENTION_OPERATOR_TOKEN}"},
        )
    listed.raise_for_status()
    return [saga["saga_id"] for saga in listed.json()]


async def _trail(system: Stack, account_id: uuid.UUID) -> list[tuple[str, str, str]]:
    dsn = system.database_url("audit").replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT p.actor_name, e.purpose, p.reason FROM audit_entry e "
            "JOIN audit_personal p USING (global_seq) WHERE e.account_id = $1",
            account_id,
        )
    finally:
        await connection.close()
    return [tuple(row) for row in rows]


async def test_operations_staff_watch_invoices_and_a_termination_on_the_dashboard(
    system: Stack, mail: MailCatcher, dashboard: str, chromium: str
) -> None:
    """Signed in, a person sees the four services healthy, the invoice.issued throughput on
    the chart and in the table, the email sent, and the new termination saga with its steps."""
    tag = uuid.uuid4().hex[:8]
    customer_email = f"buyer-{tag}@dash.example.com"
    sagas_before = set(await _sagas(system))
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={
                "name": f"Dash {tag}",
                "plan": "standard",  # a grace period: the saga stays in flight to be seen
                "owner": {
                    "name": "Ada",
                    "email": f"owner-{tag}@dash.example.com",
                    "password": OWNER_PASSWORD,
                },
            },
        )
        assert opened.status_code == 201, opened.text
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = await api.post(
            "/customers", headers=owner, json={"name": f"Bob {tag}", "email": customer_email}
        )
        for amount in ("100", "200", "300"):
            draft = await api.post(
                "/invoices",
                headers=owner,
                json={
                    "customer_id": customer.json()["id"],
                    "currency": "EUR",
                    "due_date": "2030-01-31",
                    "lines": [{"description": "Work", "quantity": "1", "unit_price": amount}],
                },
            )
            issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=owner)
            assert issued.status_code == 200, issued.text
        await mail.wait_for(lambda ms: len([m for m in ms if customer_email in m["to"]]) >= 3)
        terminated = await api.post(
            "/account/termination", headers=owner, json={"password": OWNER_PASSWORD}
        )
        assert terminated.status_code == 202, terminated.text

    screenshots = artifacts_dir("dashboard")
    issued_topic = f"{system.topic_prefix}invoice.issued"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_FLAGS)
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})
            await page.goto(dashboard)
            await expect(page).to_have_url(re.compile(r"/sign-in$"))
            await page.fill("#email", OPERATIONS_STAFF_EMAIL)
            await page.fill("#password", "not the password")
            await page.click("button[type=submit]")
            await expect(page.get_by_role("alert")).to_contain_text("do not sign in")
            await page.screenshot(path=screenshots / "sign-in-refused.png")

            # Operations staff sign in with their own staff account, and are named.
            await page.fill("#email", OPERATIONS_STAFF_EMAIL)
            await page.fill("#password", system.dashboard_password)
            await page.click("button[type=submit]")
            await expect(page.get_by_role("heading", name="Services")).to_be_visible()
            await expect(page.locator("#operator")).to_contain_text("Olive Operations")

            for spec in SERVICES:
                card = page.locator(f'article[data-service="{spec.name}"]')
                await expect(card.locator(".status")).to_have_text("ok", timeout=30_000)
            topic_row = page.locator("#topics tbody tr", has_text=issued_topic)
            await expect(topic_row).to_be_visible(timeout=30_000)
            published = int(await topic_row.locator("td").nth(1).inner_text())
            assert published >= 3, "each issued invoice was published"
            await expect(
                page.locator(f'#throughput-chart polyline[data-series="{issued_topic}"]')
            ).to_have_count(1)
            await expect(
                page.locator("#emails tbody tr", has_text="sent").locator("td").nth(1)
            ).not_to_have_text("0")

            new_sagas = set(await _sagas(system)) - sagas_before
            assert len(new_sagas) == 1, "the termination started one saga"
            saga_row = page.locator("#sagas tbody tr", has_text=next(iter(new_sagas))[:8])
            await expect(saga_row).to_contain_text("export: done", timeout=60_000)
            await expect(saga_row).to_contain_text("grace period: current", timeout=60_000)
            await expect(page.locator("#audit-chain")).to_contain_text("Chain:")
            # An invoice's issue, from the request to the email, is one trace across services.
            issue = page.locator("#traces tbody tr", has_text="/issue").filter(
                has_text="notifications"
            )
            await expect(issue.first).to_contain_text("smtp send", timeout=30_000)
            for spec in SERVICES:  # each service's consumer group, with its partitions
                group = page.locator("#lag-groups tbody tr", has_text=f".{spec.name}")
                await expect(group).to_have_count(1)

            # A malformed event audit cannot handle: its letter shows why, then goes back.
            planted = uuid.uuid4()
            await produce(
                system.bootstrap_servers,
                f"{system.topic_prefix}data.accessed",
                b'{"type": "data.accessed", "data": {"purpose": 7}}',
                key=str(planted).encode(),
                headers=[("content-type", b"application/json")],
            )
            letters = page.locator("#letters tbody tr", has_text=str(planted)[:8])
            await expect(letters).to_contain_text("invalid", timeout=60_000)
            await expect(letters).to_contain_text("audit")

            async def give_a_reason(dialog: Dialog) -> None:
                await dialog.accept("INC-7: the producer is fixed")

            page.once("dialog", give_a_reason)
            await letters.get_by_role("button", name="Send back").click()
            await expect(page.locator("#letters-status")).to_contain_text(
                "Sent back", timeout=30_000
            )
            # Still malformed, it is dead-lettered again; the first letter shows it went back.
            await expect(letters.filter(has_text="sent back")).to_have_count(1, timeout=60_000)
            await expect(letters).to_have_count(2, timeout=60_000)
            # STAFF-ACCESS: the account's trail names who sent it back, and why.
            trail = await eventually(
                lambda: _trail(system, planted), what="the redrive in the audit trail"
            )
            assert trail == [
                ("Olive Operations", "billing-operations", "INC-7: the producer is fixed")
            ]
            await page.screenshot(path=screenshots / "dashboard.png", full_page=True)

            await page.click("text=Sign out")
            await expect(page).to_have_url(re.compile(r"/sign-in$"))
            state = await page.request.get(f"{dashboard}/api/state")
            assert state.status == 401, "signed out means the state is no longer served"
        finally:
            await browser.close()

    async def purged() -> bool:
        return not new_sagas & set(await _sagas(system))

    # The grace period of the standard plan as the end-to-end services run it (conftest).
    plans = json.loads(system.service_overrides["retention"]["RETENTION_PLANS"])
    grace_s = plans["standard"]["grace_period"]
    await eventually(purged, timeout=grace_s + 90, what="the saga ending in its certificate")
