"""What telemetry costs on the issuing path.

`telemetry_overhead_ratio`: `api_issue_invoice_per_s` with tracing on (every span recorded,
passed through the allow-list and exported over OTLP/HTTP to a collector) against the same with
tracing off (the sampler drops every span), in turns on the same servers (which goes first
alternates: the machine's drift favours neither), the median of ROUNDS each, each of MEASURED
invoices. Runs of 1,500 invoices, three each, gave ratios from 0.75 to 1.04 on this machine:
the noise was larger than what was measured. The collector is a sink in a process of its own
that answers every export with 200, so what is measured is billing's side of exporting, not a
collector's.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import uuid

import aiohttp

from bench.api import INVOICES, WARMUP, _Caller, _closed_loop, _open_account
from devstack.processes import free_port
from devstack.stack import Stack

Result = tuple[str, float, str, str, float]
ROUNDS = 7
MEASURED = 3 * INVOICES

_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


async def _rate(stack: Stack, caller: _Caller | None) -> tuple[float, _Caller]:
    """Invoices issued per second by the running billing, after a warm-up."""
    base = stack.service_url("billing")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as api:
        caller = caller or await _open_account(api, base)

        async def issue_one() -> None:
            async with api.post(
                f"{base}/invoices", headers=caller.headers, data=caller.body
            ) as issued:
                await issued.read()
                if issued.status != 201:
                    raise RuntimeError(f"issuing answered {issued.status}")

        await _closed_loop(WARMUP, issue_one)
        return await _closed_loop(MEASURED, issue_one), caller


async def bench_telemetry_overhead(stack: Stack) -> list[Result]:
    """Billing with tracing exported, then without, in turns; the ratio of the medians."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.create_databases, ["billing", "keystore"])
    await asyncio.to_thread(stack.migrate, "billing")
    port = free_port()
    sink = await asyncio.create_subprocess_exec(sys.executable, "-c", _SINK, str(port))
    modes = {
        "on": {"BILLING_TRACING": "true", "BILLING_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"},
        "off": {"BILLING_TRACING": "false"},
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    caller: _Caller | None = None
    try:
        for turn in range(ROUNDS):
            for mode, env in sorted(modes.items(), reverse=turn % 2 == 1):
                stack.service_overrides = {"billing": env}
                await asyncio.to_thread(stack.start_service, "billing")
                try:
                    rate, caller = await _rate(stack, caller)
                    rates[mode].append(rate)
                finally:
                    stack.stop_services()
    finally:
        stack.service_overrides = {}
        sink.terminate()
        await sink.wait()
    return [
        (
            "telemetry_overhead_ratio",
            statistics.median(rates["on"]),
            "invoices/s with tracing exported",
            "api_issue_invoice_per_s_tracing_off",
            statistics.median(rates["off"]),
        )
    ]
