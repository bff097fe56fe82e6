"""The conformance report: the register holds every clause with modules that exist; a test
citing an unknown clause stops the run; a clause without a passing test fails it; the report
lists per clause its modules and its tests with their results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devstack.conformance import Report, load_register

POLICY_CLAUSES = [
    "PURPOSE",
    "TLS",
    "LEAST-ACCESS",
    "SCAN",
    "NO-PAN",
    "LAW",
    "PLAN-RETENTION",
    "TERMINATION",
    "INTEGRATIONS",
    "STAFF-ACCESS",
    "SUPPORT-DATA",
    "COOKIES",
    "COLLECTED",
    "USE",
    "LINKS",
    "RECTIFY",
]


def test_the_register_holds_every_clause_once_with_modules_that_exist() -> None:
    clauses = load_register()
    assert [clause.id for clause in clauses] == POLICY_CLAUSES
    assert all(clause.promise and clause.mechanisms for clause in clauses)
    assert Report(clauses).missing_mechanisms() == []


def _run(folder: Path, tests: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A pytest run of the given test module with the project's plugin and a report folder."""
    (folder / "test_cited.py").write_text(tests, encoding="utf-8")
    report = folder / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "devstack.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--rootdir",
            str(folder),
            "--conformance",
            str(report),
            str(folder / "test_cited.py"),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    return run, report


def _test_per_clause(failing: str | None = None, skipped: str | None = None) -> str:
    lines = ["import pytest", ""]
    for index, clause in enumerate(POLICY_CLAUSES):
        lines += [f'@pytest.mark.clause("{clause}")', f"def test_{index}():"]
        if clause == failing:
            lines.append("    assert False, 'the promise is broken'")
        elif clause == skipped:
            lines.append("    pytest.skip('cannot run here')")
        else:
            lines.append("    pass")
        lines.append("")
    return "\n".join(lines)


def test_a_run_where_every_clause_has_a_passing_test_reports_them_all_proven(
    tmp_path: Path,
) -> None:
    run, report = _run(tmp_path, _test_per_clause())
    assert run.returncode == 0, run.stdout + run.stderr
    markdown = (report / "report.md").read_text()
    assert markdown.count("| proven |") == len(POLICY_CLAUSES)
    assert "`services/billing/src/billing/auth/sessions.py`" in markdown  # COOKIES' module
    assert "passed: `test_cited.py::test_11`" in markdown  # COOKIES' test
    html = (report / "report.html").read_text()
    assert html.count(">proven<") == len(POLICY_CLAUSES)
    results = json.loads((report / "results.json").read_text())
    assert {r["outcome"] for r in results} == {"passed"}


def test_a_clause_whose_only_test_fails_or_skips_fails_the_run(tmp_path: Path) -> None:
    run, report = _run(tmp_path, _test_per_clause(failing="LINKS", skipped="SCAN"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "conformance: SCAN: no passing test" in run.stdout
    assert "conformance: LINKS: no passing test" in run.stdout
    markdown = (report / "report.md").read_text()
    assert "| LINKS | 0 | 1 | 0 | NOT PROVEN |" in markdown
    assert "| SCAN | 0 | 0 | 1 | NOT PROVEN |" in markdown
    assert "skipped: `test_cited.py::test_3`" in markdown


def test_a_test_citing_a_clause_that_does_not_exist_stops_the_run(tmp_path: Path) -> None:
    run, _ = _run(
        tmp_path,
        "import pytest\n\n"
        '@pytest.mark.clause("NO-PAN", "NO-TRACKING")\n'
        "def test_made_up():\n"
        "    pass\n",
    )
    assert run.returncode == 4, run.stdout + run.stderr  # a usage error: nothing ran
    assert "test_cited.py::test_made_up cites NO-TRACKING" in run.stderr
