"""The conformance report: each privacy clause of the register, the modules that keep it, and
the tests that prove it with their result from a run (Markdown and HTML).

Tests cite clauses with `@pytest.mark.clause("ID", ...)`. The plugin refuses a test that cites
an ID the register does not hold, and with `--conformance DIR` it writes the report into DIR and
fails the run when a clause has no passing test.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
REGISTER = ROOT / "docs" / "privacy-register.yaml"


@dataclass(frozen=True)
class Clause:
    """One promise of the register, in our words, and the modules that keep it."""

    id: str
    promise: str
    mechanisms: tuple[str, ...]


@dataclass
class Proof:
    """A test that cites clauses, and how it ended in this run."""

    nodeid: str
    clauses: tuple[str, ...]
    outcome: str = "not run"  # passed, failed, skipped, or not run (deselected)


@dataclass
class Report:
    """The register joined with a run's results."""

    clauses: list[Clause]
    proofs: list[Proof] = field(default_factory=list)

    def proofs_of(self, clause_id: str) -> list[Proof]:
        """The tests that cite the clause, in the order they ran."""
        return [proof for proof in self.proofs if clause_id in proof.clauses]

    def unproven(self) -> list[str]:
        """The clauses without a single passing test."""
        return [
            clause.id
            for clause in self.clauses
            if not any(proof.outcome == "passed" for proof in self.proofs_of(clause.id))
        ]

    def missing_mechanisms(self) -> list[str]:
        """Modules the register names that the project does not have."""
        return [
            f"{clause.id}: {path}"
            for clause in self.clauses
            for path in clause.mechanisms
            if not (ROOT / path).is_file()
        ]


def load_register(path: Path = REGISTER) -> list[Clause]:
    """The register's clauses, in its order."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Clause(
            id=entry["id"],
            promise=" ".join(entry["promise"].split()),
            mechanisms=tuple(entry["mechanisms"]),
        )
        for entry in document["clauses"]
    ]


def render_markdown(report: Report, *, run_at: datetime) -> str:
    """The report as Markdown: a summary table, then each clause with its modules and tests."""
    lines = [
        "# Privacy conformance report",
        "",
        f"Run of {run_at:%Y-%m-%d %H:%M} UTC. Register: `docs/privacy-register.yaml`; clause IDs"
        " as in the policies' list of promises.",
        "",
        "| Clause | Tests passed | Failed | Not passed otherwise | Status |",
        "|---|---|---|---|---|",
    ]
    unproven = set(report.unproven())
    for clause in report.clauses:
        proofs = report.proofs_of(clause.id)
        passed = sum(proof.outcome == "passed" for proof in proofs)
        failed = sum(proof.outcome == "failed" for proof in proofs)
        status = "NOT PROVEN" if clause.id in unproven or failed else "proven"
        lines.append(
            f"| {clause.id} | {passed} | {failed} | {len(proofs) - passed - failed} | {status} |"
        )
    for clause in report.clauses:
        lines += ["", f"## {clause.id}", "", clause.promise, "", "Kept by:", ""]
        lines += [f"- `{path}`" for path in clause.mechanisms]
        lines += ["", "Proved by:", ""]
        proofs = report.proofs_of(clause.id)
        lines += [f"- {proof.outcome}: `{proof.nodeid}`" for proof in proofs] or ["- no test"]
    return "\n".join(lines) + "\n"


def render_html(report: Report, *, run_at: datetime) -> str:
    """The same report as one HTML page."""
    unproven = set(report.unproven())
    rows = []
    sections = []
    for clause in report.clauses:
        proofs = report.proofs_of(clause.id)
        passed = sum(proof.outcome == "passed" for proof in proofs)
        failed = sum(proof.outcome == "failed" for proof in proofs)
        proven = clause.id not in unproven and not failed
        rows.append(
            f'<tr class="{"ok" if proven else "bad"}"><td><a href="#{clause.id}">{clause.id}</a>'
            f"</td><td>{passed}</td><td>{failed}</td><td>{len(proofs) - passed - failed}</td>"
            f"<td>{'proven' if proven else 'NOT PROVEN'}</td></tr>"
        )
        modules = "".join(
            f"<li><code>{html.escape(path)}</code></li>" for path in clause.mechanisms
        )
        tests = "".join(
            f'<li class="{proof.outcome.replace(" ", "-")}">{proof.outcome}: '
            f"<code>{html.escape(proof.nodeid)}</code></li>"
            for proof in proofs
        )
        sections.append(
            f'<section id="{clause.id}"><h2>{clause.id}</h2><p>{html.escape(clause.promise)}</p>'
            f"<h3>Kept by</h3><ul>{modules}</ul><h3>Proved by</h3>"
            f"<ul>{tests or '<li>no test</li>'}</ul></section>"
        )
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        "<title>Privacy conformance report</title><style>"
        "body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .6rem}"
        "tr.ok td:last-child,li.passed{color:#17622a}tr.bad td:last-child,li.failed{color:#a11}"
        "code{font-size:13px}</style><h1>Privacy conformance report</h1>"
        f"<p>Run of {run_at:%Y-%m-%d %H:%M} UTC. Register: <code>docs/privacy-register.yaml"
        "</code>.</p><table><tr><th>Clause</th><th>Tests passed</th><th>Failed</th>"
        f"<th>Not passed otherwise</th><th>Status</th></tr>{''.join(rows)}</table>"
        f"{''.join(sections)}</html>\n"
    )


def write_report(report: Report, folder: Path, *, run_at: datetime | None = None) -> None:
    """Write report.md, report.html and the raw results.json into the folder."""
    run_at = run_at or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render_markdown(report, run_at=run_at), encoding="utf-8")
    (folder / "report.html").write_text(render_html(report, run_at=run_at), encoding="utf-8")
    results = [
        {"nodeid": proof.nodeid, "clauses": list(proof.clauses), "outcome": proof.outcome}
        for proof in report.proofs
    ]
    (folder / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")


def cited_clauses(item: pytest.Item) -> tuple[str, ...]:
    """The clause IDs a test cites, through its own marks and its module's."""
    ids: list[str] = []
    for mark in item.iter_markers("clause"):
        ids.extend(str(arg) for arg in mark.args)
    return tuple(dict.fromkeys(ids))


class ConformancePlugin:
    """Checks citations at collection; with a report folder, records outcomes and reports."""

    def __init__(self, clauses: list[Clause], folder: Path | None) -> None:
        self.report = Report(clauses)
        self.known = {clause.id for clause in clauses}
        self.folder = folder
        self._proofs: dict[str, Proof] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Refuse the run when a test cites an ID that is not in the register."""
        unknown = [
            f"{item.nodeid} cites {clause_id}"
            for item in items
            for clause_id in cited_clauses(item)
            if clause_id not in self.known
        ]
        if unknown:
            raise pytest.UsageError(
                "tests cite clause IDs that docs/privacy-register.yaml does not hold:\n  "
                + "\n  ".join(unknown)
            )
        for item in items:
            clauses = cited_clauses(item)
            if clauses:
                self._proofs[item.nodeid] = Proof(item.nodeid, clauses)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A test passes only when every phase did; a failure or skip anywhere is kept."""
        proof = self._proofs.get(report.nodeid)
        if proof is None:
            return
        if report.failed:
            proof.outcome = "failed"
        elif report.skipped and proof.outcome != "failed":
            proof.outcome = "skipped"
        elif report.when == "call" and report.passed and proof.outcome == "not run":
            proof.outcome = "passed"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the report, and fail the run when a clause has no passing test."""
        if self.folder is None:
            return
        self.report.proofs = list(self._proofs.values())
        write_report(self.report, self.folder)
        problems = [f"{clause_id}: no passing test" for clause_id in self.report.unproven()]
        problems += [f"no such module: {m}" for m in self.report.missing_mechanisms()]
        reporter: Any = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"conformance report: {self.folder / 'report.html'}")
            for problem in problems:
                reporter.write_line(f"conformance: {problem}", red=True)
        if problems and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def add_options(parser: pytest.Parser) -> None:
    """`--conformance DIR`: write the report there and fail on an unproven clause."""
    parser.addoption(
        "--conformance",
        metavar="DIR",
        default=None,
        help="write the privacy conformance report into DIR; fail when a clause has no "
        "passing test",
    )


def configure(config: pytest.Config) -> None:
    """Register the clause mark and the plugin."""
    config.addinivalue_line(
        "markers",
        "clause(*ids): the privacy clauses (docs/privacy-register.yaml) this test proves",
    )
    folder = config.getoption("--conformance")
    plugin = ConformancePlugin(load_register(), Path(folder) if folder else None)
    config.pluginmanager.register(plugin, "quittance-conformance")
