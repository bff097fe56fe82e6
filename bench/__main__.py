"""Run the benchmarks and print one JSON line per metric; `python -m bench [name]` runs one."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.api import bench_api_issue_invoice
from bench.audit import bench_audit
from bench.chaos import bench_chaos
from bench.identity import bench_identity
from bench.notifications import bench_notifications
from bench.relay import bench_relay
from bench.scaleout import bench_scaleout
from bench.sweep import bench_sweep
from bench.telemetry import bench_telemetry_overhead
from bench.termination import bench_termination
from bench.webhooks import bench_webhooks
from devstack.processes import free_port
from devstack.stack import SERVICES, Stack, StackPorts

Result = tuple[str, float, str, str, float]


def _one(bench: Callable[[Stack], Coroutine[Any, Any, Result]]) -> Any:
    async def run(stack: Stack) -> list[Result]:
        return [await bench(stack)]

    return run


BENCHES: dict[str, Callable[[Stack], Coroutine[Any, Any, list[Result]]]] = {
    "relay_events_per_s": _one(bench_relay),
    # api_issue_invoice_per_s, billing_cpu_ms_per_invoice, api_issue_p99_ms, load generator
    "api_issue_invoice_per_s": bench_api_issue_invoice,
    # api_sign_in_per_s, api_authenticated_read_per_s
    "identity": bench_identity,
    # termination_1m_records_s, export_rows_per_s, export_peak_rss_mb, api_p99_during_export_ms
    "termination": bench_termination,
    # webhook_deliveries_per_s against raw_http_post_per_s
    "webhooks": bench_webhooks,
    # emails_per_s against raw_smtp_send_per_s, invoice_to_email_p99_ms against raw_pipeline_p99_ms
    "notifications": bench_notifications,
    # retention_sweep_rows_per_s against raw_delete_rows_per_s, api_p99_during_sweep_ms
    "sweep": bench_sweep,
    # audit_append_per_s against copy_in_rows_per_s, audit_verify_entries_per_s against
    # raw_read_entries_per_s
    "audit": bench_audit,
    # api_issue_invoice_per_s with tracing exported over OTLP against the same with it off
    "telemetry_overhead_ratio": bench_telemetry_overhead,
    # chaos_effects_lost and chaos_effects_doubled against the effects checked
    "chaos": bench_chaos,
    # emails/s of two notifications instances in one consumer group against one instance
    "scaleout_consumer_speedup": bench_scaleout,
}


def main() -> None:
    """Start the servers once, run the chosen benchmarks, print their lines."""
    chosen = sys.argv[1:] or list(BENCHES)
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHES)}")
    with tempfile.TemporaryDirectory(prefix="quittance-bench-") as var:
        stack = Stack(
            var_dir=Path(var),
            ports=StackPorts.free(),
            service_ports={s.name: free_port() for s in SERVICES},
        )
        stack.start_infrastructure()
        try:
            for name in chosen:
                for metric, value, unit, baseline_metric, baseline_value in asyncio.run(
                    BENCHES[name](stack)
                ):
                    print(
                        json.dumps(
                            {
                                "metric": metric,
                                "value": round(value, 1),
                                "unit": unit,
                                "baseline_metric": baseline_metric,
                                "baseline_value": round(baseline_value, 1),
                                "ratio": round(value / baseline_value, 3),
                            }
                        ),
                        flush=True,
                    )
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
