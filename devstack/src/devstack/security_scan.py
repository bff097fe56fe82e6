"""The security scans CI runs (SCAN): a static security lint of the code and a vulnerability
audit of the locked dependencies.

`python -m devstack.security_scan lint` runs ruff's security rules (bandit's checks) over the
project. `python -m devstack.security_scan audit [REQUIREMENTS]` audits uv.lock's pins (or a
requirements file's) with pip-audit against the Python Packaging Advisory Database: it fails on
a known vulnerability that has a fixed release, lists those without a fix, and fails too when a
dependency could not be audited (an audit that could not look is no clean audit).

`audit --offline [REQUIREMENTS]` gives the same verdict from the advisories kept in
`security/advisories/` (the PyPA database's entries for every locked package, at the commit
`security/advisories/SOURCE` names), for machines that cannot reach PyPI's vulnerability API;
a pin of a package the snapshot was not taken for is not audited, and fails. `advisories
DATABASE` takes a new snapshot from a clone of github.com/pypa/advisory-database.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ADVISORIES = ROOT / "security" / "advisories"


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


def normalized(name: str) -> str:
    """A package name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: str) -> dict[str, str]:
    """`name==version` pins of a requirements file (hashes, markers and comments ignored)."""
    found = {}
    for line in requirements.splitlines():
        match = re.match(
            r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)", line
        )
        if match:
            found[normalized(match.group(1))] = match.group(2)
    return found


def _affects(affected: dict[str, Any], version: str) -> tuple[bool, tuple[str, ...]]:
    """Whether an OSV `affected` entry covers the version, and the releases that fix it."""
    from packaging.version import InvalidVersion, Version

    fixed = tuple(
        str(event["fixed"])
        for ranges in affected.get("ranges", [])
        for event in ranges.get("events", [])
        if "fixed" in event
    )
    if version in {str(listed) for listed in affected.get("versions", [])}:
        return True, fixed
    try:
        pinned = Version(version)
    except InvalidVersion:
        return False, fixed
    for ranges in affected.get("ranges", []):
        if ranges.get("type") != "ECOSYSTEM":
            continue
        introduced: Version | None = None
        for event in ranges.get("events", []):
            if "introduced" in event:
                introduced = Version(str(event["introduced"]))
            elif introduced is not None and "fixed" in event:
                if introduced <= pinned < Version(str(event["fixed"])):
                    return True, fixed
                introduced = None
            elif introduced is not None and "last_affected" in event:
                if introduced <= pinned <= Version(str(event["last_affected"])):
                    return True, fixed
                introduced = None
        if introduced is not None and pinned >= introduced:
            return True, fixed  # introduced and never fixed
    return False, fixed


def offline_audit(requirements: str, advisories: Path = ADVISORIES) -> AuditResult:
    """Audit the pins against the kept snapshot of the PyPA advisory database."""
    covered = set(json.loads((advisories / "SOURCE.json").read_text(encoding="utf-8"))["packages"])
    findings: list[Finding] = []
    unaudited: list[str] = []
    for name, version in sorted(pins(requirements).items()):
        if name not in covered:
            unaudited.append(f"{name}: not in the advisory snapshot (take a new one)")
            continue
        folder = advisories / name
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            advisory = yaml.safe_load(path.read_text(encoding="utf-8"))
            if advisory.get("withdrawn"):
                continue
            for affected in advisory.get("affected", []):
                package = affected.get("package", {})
                if package.get("ecosystem") != "PyPI" or normalized(package["name"]) != name:
                    continue
                hit, fixed = _affects(affected, version)
                if hit:
                    findings.append(Finding(name, version, advisory["id"], fixed))
                    break
    return AuditResult(findings, unaudited)


def take_snapshot(database: Path, requirements: str, advisories: Path = ADVISORIES) -> int:
    """Copy the database's advisories of every locked package into `advisories`; how many."""
    commit = subprocess.run(
        ["git", "-C", str(database), "log", "-1", "--format=%H %cI"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    packages = sorted(pins(requirements))
    if advisories.exists():
        shutil.rmtree(advisories)
    advisories.mkdir(parents=True)
    copied = 0
    folders = {normalized(f.name): f for f in (database / "vulns").iterdir() if f.is_dir()}
    for name in packages:
        if name in folders:
            shutil.copytree(folders[name], advisories / name)
            copied += len(list((advisories / name).glob("*.yaml")))
    (advisories / "SOURCE.json").write_text(
        json.dumps(
            {
                "database": "https://github.com/pypa/advisory-database (CC-BY-4.0)",
                "commit": commit[0],
                "committed": commit[1],
                "packages": packages,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    return copied


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
            "these dependencies could not be audited (pip-audit asks "
            "https://pypi.org/pypi/<name>/<version>/json; the offline audit knows only the "
            "packages its snapshot was taken for)"
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
        offline = "--offline" in args
        files = [arg for arg in args[1:] if arg != "--offline"]
        requirements = (
            Path(files[0]).read_text(encoding="utf-8") if files else locked_requirements()
        )
        if offline:
            source = json.loads((ADVISORIES / "SOURCE.json").read_text(encoding="utf-8"))
            print(
                f"advisories as of {source['committed'][:10]} (PyPA database commit "
                f"{source['commit'][:12]}, kept in security/advisories): later ones are not "
                "known to this audit; `make audit` asks the live database"
            )
        result = offline_audit(requirements) if offline else audit(requirements)
        print_audit(result)
        return 0 if result.passed else 1
    if args[:1] == ["advisories"] and len(args) == 2:
        copied = take_snapshot(Path(args[1]), locked_requirements())
        print(f"{copied} advisories kept in {ADVISORIES}")
        return 0
    print(
        "usage: python -m devstack.security_scan lint | audit [--offline] [REQUIREMENTS]"
        " | advisories DATABASE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
