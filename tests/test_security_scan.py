"""SCAN: the security scans CI runs: the static security lint over the project, and the
dependency audit's verdict on what pip-audit reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devstack import security_scan
from devstack.security_scan import parse_audit

pytestmark = pytest.mark.clause("SCAN")
ROOT = Path(__file__).resolve().parents[1]


def _lint(folder: Path) -> subprocess.CompletedProcess[str]:
    """The scan's lint rules, run on a folder (ruff reads the project's configuration)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--select",
            "S",
            "--ignore",
            "S101",
            "--no-fix",
            "--no-cache",
            str(folder),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_project_passes_its_static_security_lint() -> None:
    """The whole project, as CI scans it."""
    assert security_scan.lint() == 0


def test_the_security_lint_refuses_code_with_known_insecure_calls(tmp_path: Path) -> None:
    """A shell command built from input, an unsafe YAML load and a hard-coded bind to every
    address are each flagged, so a change that brings one in fails the scan."""
    module = tmp_path / "handlers.py"
    module.write_text(
        "import subprocess\n"
        "import yaml\n\n"
        "def run(name: str) -> None:\n"
        "    subprocess.call(f'echo {name}', shell=True)\n\n"
        "def load(text: str) -> object:\n"
        "    return yaml.load(text)\n\n"
        "HOST = '0.0.0.0'\n",
        encoding="utf-8",
    )
    run = _lint(tmp_path)
    assert run.returncode == 1, run.stdout
    for rule in ("S602", "S506", "S104"):
        assert rule in run.stdout, f"{rule} was not flagged:\n{run.stdout}"


def test_a_vulnerability_with_a_fix_fails_the_audit_and_one_without_is_only_listed() -> None:
    """The verdict on pip-audit's report: a fixable vulnerability fails; one that no release
    fixes yet is listed, not failed (nothing to upgrade to)."""
    fixable = parse_audit(
        {
            "dependencies": [
                {
                    "name": "jinja2",
                    "version": "2.10",
                    "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"]}],
                },
                {"name": "httpx", "version": "0.28.1", "vulns": []},
            ]
        }
    )
    assert not fixable.passed
    assert [(f.package, f.vulnerability) for f in fixable.fixable] == [("jinja2", "PYSEC-2019-217")]
    unfixed = parse_audit(
        {
            "dependencies": [
                {
                    "name": "ecdsa",
                    "version": "0.19.1",
                    "vulns": [{"id": "GHSA-wj6h-64fc-37mp", "fix_versions": []}],
                }
            ]
        }
    )
    assert unfixed.passed
    assert [f.package for f in unfixed.findings] == ["ecdsa"]


def test_a_dependency_the_audit_could_not_look_up_fails_it() -> None:
    """An audit that could not ask about a pin is no clean audit."""
    result = parse_audit(
        {
            "dependencies": [
                {"name": "httpx", "version": "0.28.1", "vulns": []},
                {"name": "yarl", "skip_reason": "Dependency not found on PyPI (1.25.1)"},
            ]
        }
    )
    assert not result.passed
    assert result.unaudited == ["yarl: Dependency not found on PyPI (1.25.1)"]


def test_the_audit_reads_every_locked_pin_of_the_workspace() -> None:
    """What is audited is uv.lock as installed: every third-party package, pinned and hashed,
    the dev tools included, the workspace's own packages not."""
    requirements = security_scan.locked_requirements()
    pins = {
        line.split("==")[0]
        for line in requirements.splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    for package in ("fastapi", "aiokafka", "asyncpg", "sqlmodel", "pytest", "pip-audit"):
        assert package in pins, f"{package} is not audited"
    assert not any(pin.startswith("quittance") for pin in pins)
    assert "--hash=sha256:" in requirements


@pytest.mark.network
def test_a_known_vulnerable_pin_fails_the_audit() -> None:
    """Against the live advisory database: jinja2 2.10 has PYSEC-2019-217, fixed in 2.10.1.
    Needs PyPI's per-release JSON API (`make scan` runs it; this machine cannot reach it)."""
    result = security_scan.audit("jinja2==2.10\n")
    assert not result.unaudited, result.unaudited
    assert "PYSEC-2019-217" in {f.vulnerability for f in result.fixable}


def test_a_known_vulnerable_pin_fails_the_offline_audit() -> None:
    """Against the advisories kept in security/advisories (the PyPA database's entries for
    every locked package): jinja2 2.10 has PYSEC-2019-217, fixed in 2.10.1, and fails; the
    release that fixes it does not."""
    vulnerable = security_scan.offline_audit("jinja2==2.10 \\\n    --hash=sha256:00\n")
    assert not vulnerable.passed
    assert ("PYSEC-2019-217", ("2.10.1",)) in {
        (f.vulnerability, f.fixed_in) for f in vulnerable.fixable
    }
    assert "PYSEC-2019-217" not in {
        f.vulnerability for f in security_scan.offline_audit("jinja2==2.10.1\n").findings
    }


def test_the_locked_pins_pass_the_offline_audit_and_every_one_is_covered() -> None:
    """What CI runs (`make audit-offline`): every pin of uv.lock is in the snapshot, and none
    has a vulnerability with a fix."""
    result = security_scan.offline_audit(security_scan.locked_requirements())
    assert not result.unaudited, result.unaudited
    assert result.passed, result.fixable


def test_a_package_the_snapshot_was_not_taken_for_is_not_audited_and_fails() -> None:
    """A dependency added after the snapshot: no advisory known is not no advisory."""
    result = security_scan.offline_audit("leftpad-for-python==1.0\n")
    assert not result.passed
    assert result.unaudited == ["leftpad-for-python: not in the advisory snapshot (take a new one)"]


TWO_STRETCHES = [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}]


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ([{"introduced": "0"}, {"fixed": "2.0"}], "1.9", True),
        ([{"introduced": "0"}, {"fixed": "2.0"}], "2.0", False),
        ([{"introduced": "1.5"}, {"fixed": "2.0"}], "1.4", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.3"}], "1.3", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.3"}], "1.3.1", False),
        ([{"introduced": "3.0"}], "9.9", True),  # no release fixes it yet
        (
            [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}],
            "1.5",
            False,
        ),
        (
            [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}],
            "2.0.5",
            True,
        ),
    ],
)
def test_the_offline_audit_reads_osv_ranges_as_the_database_means_them(
    events: list[dict[str, str]], version: str, affected: bool
) -> None:
    """OSV ECOSYSTEM ranges: from `introduced` up to (not including) `fixed`, or up to and
    including `last_affected`; several stretches in one range."""
    hit, _ = security_scan._affects({"ranges": [{"type": "ECOSYSTEM", "events": events}]}, version)
    assert hit is affected


def test_a_withdrawn_advisory_does_not_fail_the_offline_audit(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "SOURCE.json").write_text('{"packages": ["demo"]}', encoding="utf-8")
    advisory = {
        "id": "PYSEC-0000-1",
        "affected": [
            {
                "package": {"name": "demo", "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2"}]}],
            }
        ],
    }
    (tmp_path / "demo" / "PYSEC-0000-1.yaml").write_text(yaml.safe_dump(advisory), "utf-8")
    assert not security_scan.offline_audit("demo==1\n", tmp_path).passed
    advisory["withdrawn"] = "2024-01-01T00:00:00Z"
    (tmp_path / "demo" / "PYSEC-0000-1.yaml").write_text(yaml.safe_dump(advisory), "utf-8")
    assert security_scan.offline_audit("demo==1\n", tmp_path).passed
