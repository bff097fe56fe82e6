"""The observer: reads every service's health, metrics and staff APIs on a schedule, and keeps
the latest state and a short history for the charts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ops.domain import (
    Reading,
    ServiceReading,
    audit_status,
    dead_letter_rows,
    email_counts,
    history_point,
    lag_by_group,
    lag_rows,
    letter_rows,
    outbox_rows,
    parse_metrics,
    service_rows,
    topic_rows,
    trace_rows,
)
from ops.settings import OpsSettings

TRACES_PATH = "/traces?limit=1000"  # each service's newest spans (statements included)

log = logging.getLogger(__name__)


class Observer:
    """Reads the services as an operator would, over HTTP only (never their databases)."""

    def __init__(
        self,
        settings: OpsSettings,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self._previous: Reading | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=settings.history_points)
        self._state: dict[str, Any] | None = None
        self._letters: dict[str, list[dict[str, Any]] | None] = {}
        self._letters_due = 0.0

    async def read_service(self, name: str, url: str) -> ServiceReading:
        """A service's /healthz and /metrics; unreachable when either cannot be read."""
        try:
            health, metrics = await asyncio.gather(
                self.client.get(f"{url}/healthz"), self.client.get(f"{url}/metrics")
            )
            metrics.raise_for_status()
            report = health.json()
            checks = report.get("checks", {}) if isinstance(report, dict) else {}
            return ServiceReading(
                name=name,
                reachable=True,
                healthy=health.status_code == 200,
                checks={str(k): str(v) for k, v in checks.items()},
                samples=tuple(parse_metrics(metrics.text)),
            )
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("could not read %s: %s", name, type(exc).__name__)
            return ServiceReading(name=name, reachable=False)

    async def _staff_list(self, service: str, path: str, token: str) -> list[dict[str, Any]] | None:
        url = self.settings.services.get(service)
        if url is None:
            return None
        try:
            response = await self.client.get(
                f"{url}{path}", headers={"authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # A 404 is an answer (a service whose spans go to the collector), not a failure.
            missing = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404
            log.log(
                logging.DEBUG if missing else logging.WARNING,
                "could not read %s%s: %s",
                service,
                path,
                type(exc).__name__,
            )
            return None
        return body if isinstance(body, list) else None

    async def poll(self) -> dict[str, Any]:
        """Read everything once and compute the dashboard's state."""
        services = await asyncio.gather(
            *(self.read_service(n, u) for n, u in self.settings.services.items())
        )
        sagas, alerts, *spans = await asyncio.gather(
            self._staff_list("retention", "/sagas", self.settings.operator_token("retention")),
            self._staff_list("audit", "/alerts", self.settings.operator_token("audit")),
            *(
                self._staff_list(s, TRACES_PATH, self.settings.operator_token(s))
                for s in self.settings.services
            ),
        )
        if self.clock() >= self._letters_due:
            await self.read_letters()
        current = Reading(self.clock(), tuple(services))
        previous, self._previous = self._previous, current
        topics = topic_rows(current, previous)
        groups = lag_by_group(current)
        read_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._history.append({"at": read_at, **history_point(current, topics, groups)})
        self._state = {
            "read_at": read_at,
            "services": service_rows(current, previous),
            "topics": topics,
            "lag_groups": groups,
            "lag": lag_rows(current),
            "outbox": outbox_rows(current),
            "dead_letters": dead_letter_rows(current),
            "letters": letter_rows(self._letters),
            "traces": trace_rows(dict(zip(self.settings.services, spans, strict=True))),
            "emails": email_counts(current),
            "sagas": sagas,
            "audit": audit_status(current, alerts),
            "history": list(self._history),
        }
        return self._state

    async def read_letters(self) -> None:
        """Each service's dead letters with their reasons (less often than the metrics)."""
        self._letters_due = self.clock() + self.settings.dead_letters_interval_s
        services = list(self.settings.services)
        listed = await asyncio.gather(
            *(
                self._staff_list(s, "/dead-letters", self.settings.operator_token(s))
                for s in services
            )
        )
        self._letters = dict(zip(services, listed, strict=True))

    async def redrive(
        self, service: str, letter_id: str, reason: str, *, operator: tuple[str, str]
    ) -> httpx.Response:
        """Ask a service to send one of its dead letters back, in the operator's name (and
        staff id), then list the letters again."""
        url = self.settings.services[service]
        name, staff_id = operator
        answer = await self.client.post(
            f"{url}/dead-letters",
            params={"id": letter_id, "reason": reason, "operator": name, "operator_id": staff_id},
            headers={"authorization": f"Bearer {self.settings.operator_token(service)}"},
        )
        await self.read_letters()
        if self._state is not None:
            self._state["letters"] = letter_rows(self._letters)
        return answer

    async def state(self) -> dict[str, Any]:
        """The latest state (read now if nothing was read yet)."""
        return self._state if self._state is not None else await self.poll()

    async def run(self) -> None:
        """Poll every `poll_interval_s` until cancelled; a failed read never stops the loop."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("reading the services failed")
            await asyncio.sleep(self.settings.poll_interval_s)
