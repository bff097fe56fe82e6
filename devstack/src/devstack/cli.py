"""`quittance-devstack up`: the whole system on its embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from devstack.stack import OPERATIONS_STAFF_EMAIL, SERVICES, Stack, StackPorts


def up(
    var_dir: Path, ports: StackPorts, service_ports: dict[str, int], *, tls: bool = False
) -> int:
    """Start everything, print the URLs, and stop everything on Ctrl-C."""
    stack = Stack(var_dir=var_dir, ports=ports, service_ports=service_ports, tls=tls)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        print("starting PostgreSQL, the Kafka broker and the mail catcher ...", flush=True)
        stack.start_infrastructure()
        print("creating databases, running migrations, starting the services ...", flush=True)
        stack.start_services()
        stack.enrol_operations_staff()
        stack.start_dashboard()
        print(_banner(stack), flush=True)
        while not stopping:
            watched = {**stack.services, **({"ops": stack.dashboard} if stack.dashboard else {})}
            for name, process in watched.items():
                if not process.alive():
                    print(
                        f"{name} exited; its log: {process.log_path}\n{process.tail()}", flush=True
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        print(f"could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0


def _banner(stack: Stack) -> str:
    lines = ["", "Quittance is running. Ctrl-C stops everything.", ""]
    for spec in SERVICES:
        lines.append(f"  {spec.name:<14} {stack.service_url(spec.name)}   (/healthz, /metrics)")
    lines.append(f"  {'billing API':<14} {stack.service_url('billing')}/docs")
    lines.append(
        f"  {'ops dashboard':<14} {stack.dashboard_url}   (staff: {OPERATIONS_STAFF_EMAIL}, "
        f"password: {stack.dashboard_password})"
    )
    lines.append(f"  {'web inbox':<14} {stack.mail_url}")
    lines.append(f"  {'SMTP':<14} smtp://127.0.0.1:{stack.ports.smtp}")
    lines.append(f"  {'payments':<14} {stack.payment_gateway_url}   (the sandbox gateway)")
    lines.append(f"  {'Kafka':<14} {stack.bootstrap_servers}")
    lines.append(
        f"  {'PostgreSQL':<14} postgresql://postgres@127.0.0.1:{stack.ports.postgres}/<service>"
    )
    lines.append(f"  {'exports':<14} {stack.export_dir.resolve()}")
    lines.append(f"  {'logs':<14} {stack.log_dir.resolve()}")
    if stack.tls:
        lines.append(f"  {'TLS':<14} HTTPS with HSTS; trust {stack.authority.ca_file.resolve()}")
        lines.append("                 (the certificate authority made for this machine)")
    lines.append("")
    lines.append("  The first staff member (a security admin), from another terminal:")
    lines.append("    .venv/bin/python -m billing.main security-admin --name NAME --email EMAIL")
    return "\n".join(lines)


def main() -> None:
    """Entry point of `quittance-devstack`."""
    parser = argparse.ArgumentParser(prog="quittance-devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the whole system until Ctrl-C")
    up_parser.add_argument("--var-dir", type=Path, default=Path("var"))
    up_parser.add_argument(
        "--tls",
        action="store_true",
        help="serve the services and the dashboard over HTTPS, with a local certificate "
        "authority made in <var-dir>/tls",
    )
    defaults = StackPorts()
    for name in ("postgres", "kafka", "smtp", "mail_web", "payment_gateway", "dashboard"):
        up_parser.add_argument(
            f"--{name.replace('_', '-')}-port", type=int, default=getattr(defaults, name)
        )
    for spec in SERVICES:
        up_parser.add_argument(f"--{spec.name}-port", type=int, default=spec.port)
    args = parser.parse_args()
    if args.command == "up":
        ports = StackPorts(
            args.postgres_port,
            args.kafka_port,
            args.smtp_port,
            args.mail_web_port,
            args.payment_gateway_port,
            args.dashboard_port,
        )
        service_ports = {spec.name: getattr(args, f"{spec.name}_port") for spec in SERVICES}
        sys.exit(up(args.var_dir, ports, service_ports, tls=args.tls))


if __name__ == "__main__":
    main()
