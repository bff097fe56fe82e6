"""Schemathesis against billing over real HTTP: every operation, every check, every phase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing.main import create_app
from billing.settings import BillingSettings

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]
HERE = Path(__file__).parent
# A fixed seed keeps `make test` repeatable; FUZZ_SEED explores further (`make fuzz`).
SEED = os.environ.get("FUZZ_SEED", "20261122")
# Cases per operation: 15 keeps `make test` within its time with 80-odd operations; `make fuzz`
# asks for more (FUZZ_MAX_EXAMPLES, 50 by default there).
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "15")


def test_the_fuzzer_finds_nothing_in_any_operation_check_or_phase(
    billing_url: str,
    billing_settings: BillingSettings,
    tmp_path: Path,
    security_admin: dict[str, str],
) -> None:
    """Schemathesis with all checks (server errors, status codes, content types, headers,
    response schemas, negative data refused, positive data accepted, auth not ignored, Allow on
    405, ...) through examples, coverage, fuzzing and the stateful phase along the OpenAPI links."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{billing_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--no-color",
    ]
    environment = os.environ | {
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "FUZZ_BILLING_URL": billing_url,
        "FUZZ_SECURITY_ADMIN": json.dumps(security_admin),
    }
    run = subprocess.run(
        command,
        cwd=tmp_path,  # its cache folder
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    paths = create_app(billing_settings).openapi()["paths"].values()
    operations = sum(len(methods) for methods in paths)
    assert f"Selected: {operations}/{operations}" in report, report
    assert f"Tested: {operations}" in report, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, f"the {phase} phase did not pass:\n{report}"
    assert "failures" not in report.split("SUMMARY")[-1].lower(), report
