"""The security scans CI runs (SCAN): a static security lint of the code and a vulnerability
audit of the locked dependencies.

`python -m devstack.security_scan lint` runs ruff's security rules (bandit's checks) over the
project. `python -m devstack.security_scan audit [REQUIREMENTS]` audits uv.lock's pins (or a
requirements file's) with pip-audit against the Python Packaging Advisory Database: it fails on
a known vulnerability that has a fixed release, lists those without a fix, and fails too when a
dependency could not be audited (an audit that could not look is no clean audit).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Finding:
    """A known vulnerability of a pinned dependency."""

    package: str
    version: str
    vulnerability: str
    fixed_in: tuple[str, ...]


@dataclass(frozen=True)
class AuditResult:
    """What the audit found, and what it could not look at."""

    findings: list[Finding]
    unaudited: list[str]  # "name: why"

    @property
    def fixable(self) -> list[Finding]:
        """Vulnerabilities a newer release fixes: these fail the build."""
        return [finding for finding in self.findings if finding.fixed_in]

    @property
    def passed(self) -> bool:
        """No fixable vulnerability, and every dependency audited."""
        return not self.fixable and not self.unaudited


def locked_requirements() -> str:
    """uv.lock's pins for every package of the workspace, as a hashed requirements file."""
    return subprocess.run(
        [
            str(ROOT / ".tools" / "bin" / "uv"),
            "export",
            "--frozen",
            "--all-packages",
            "--all-groups",
            "--no-emit-workspace",
            "--no-header",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def parse_audit(report: dict[str, Any]) -> AuditResult:
    """pip-audit's JSON report as findings and unaudited dependencies."""
    findings: list[Finding] = []
    unaudited: list[str] = []
    for dependency in report.get("dependencies", []):
        name = dependency["name"]
        if "skip_reason" in dependency:
            unaudited.append(f"{name}: {dependency['skip_reason']}")
            continue
        version = dependency["version"]
        findings += [
            Finding(
                name, version, vulnerability["id"], tuple(vulnerability.get("fix_versions", []))
            )
            for vulnerability in dependency.get("vulns", [])
        ]
    return AuditResult(findings, unaudited)


def audit(requirements: str) -> AuditResult:
    """Audit fully pinned requirements (hashed or not) with pip-audit's PyPI service."""
    hashed = "--hash=" in requirements
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requirements.txt"
        path.write_text(requirements, encoding="utf-8")
        run = subprocess.run(
            [
                str(BIN / "pip-audit"),
                "--requirement",
                str(path),
                "--disable-pip",
                "--require-hashes" if hashed else "--no-deps",
                "--vulnerability-service",
                "pypi",
                "--format",
                "json",
                "--progress-spinner",
                "off",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if not run.stdout.strip():
        raise RuntimeError(f"pip-audit printed no report:\n{run.stderr}")
    return parse_audit(json.loads(run.stdout))


def print_audit(result: AuditResult) -> None:
    """Say what the audit found, in the order a person acts on it."""
    for finding in result.fixable:
        print(
            f"VULNERABLE {finding.package}=={finding.version}: {finding.vulnerability}, "
            f"fixed in {', '.join(finding.fixed_in)}"
        )
    for finding in result.findings:
        if not finding.fixed_in:
            print(f"no fix yet {finding.package}=={finding.version}: {finding.vulnerability}")
    for line in result.unaudited:
        print(f"NOT AUDITED {line}")
    if result.unaudited:
        print(
            "the vulnerability service did not answer for these dependencies "
            "(pip-audit asks https://pypi.org/pypi/<name>/<version>/json)"
        )
    print("dependency audit: " + ("passed" if result.passed else "FAILED"))


def lint() -> int:
    """Ruff's security rules (flake8-bandit) over the project, with the project's exceptions."""
    # S101 (assert) stays ignored as in pyproject.toml: it is how pytest tests speak.
    command = [str(BIN / "ruff"), "check", "--select", "S", "--ignore", "S101", "--no-fix", "."]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    """`lint`, or `audit` with an optional requirements file instead of uv.lock."""
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["lint"]:
        return lint()
    if args[:1] == ["audit"]:
        requirements = (
            Path(args[1]).read_text(encoding="utf-8") if len(args) > 1 else locked_requirements()
        )
        result = audit(requirements)
        print_audit(result)
        return 0 if result.passed else 1
    print("usage: python -m devstack.security_scan lint | audit [REQUIREMENTS]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
