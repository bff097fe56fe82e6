"""Printed documents as PDF (fpdf2, with a bundled Unicode font): a title, facts, parties, a
table of lines, totals and notes. Services describe a document; this lays it out.

Text is drawn as text, never interpreted: user-written markup or links print as typed (LINKS),
and characters the font lacks print as a replacement mark instead of failing the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

FONTS = Path(__file__).parent / "fonts"
FONT = "DejaVu"
REPLACEMENT = "?"


@dataclass(frozen=True)
class PrintedParty:
    """A block of the document's parties: "From", "Bill to"."""

    label: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class PrintedDocument:
    """What a document shows, already formatted as text."""

    title: str
    facts: tuple[tuple[str, str], ...] = ()
    parties: tuple[PrintedParty, ...] = ()
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    # One letter per column: L left, R right (amounts), C centre.
    alignment: str = ""
    widths: tuple[int, ...] = ()  # relative column widths; equal by default
    totals: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())


@cache
def _covered() -> frozenset[int]:
    """The code points the bundled font can draw."""
    from fontTools.ttLib import TTFont  # imported when first needed: it costs a second

    font = TTFont(FONTS / "DejaVuSans.ttf", lazy=True)
    return frozenset(font.getBestCmap())


def printable(text: str) -> str:
    """The text with what the font cannot draw (and control characters) replaced."""
    covered = _covered()
    return "".join(
        char if ord(char) in covered and (char >= " " or char == "\n") else REPLACEMENT
        for char in text
    )


def render_pdf(document: PrintedDocument) -> bytes:
    """The document as PDF bytes (A4)."""
    # Imported when first needed: fpdf2 takes a second to import, on every service start.
    from fpdf import FPDF
    from fpdf.enums import TableCellFillMode, XPos, YPos

    pdf = FPDF(format="A4")
    pdf.set_creator("Quittance")
    pdf.set_title(printable(document.title))
    pdf.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.multi_cell(0, 9, printable(document.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_font(FONT, "", 9)
    for label, value in document.facts:
        pdf.cell(40, 5, printable(label))
        pdf.cell(0, 5, printable(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    for party in document.parties:
        pdf.set_font(FONT, "B", 9)
        pdf.cell(0, 5, printable(party.label), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, "", 9)
        for line in party.lines:
            pdf.multi_cell(0, 5, printable(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    if document.columns:
        pdf.ln(2)
        alignment = document.alignment or "L" * len(document.columns)
        with pdf.table(
            col_widths=document.widths or None,
            text_align=tuple(alignment),
            cell_fill_mode=TableCellFillMode.ROWS,
            cell_fill_color=245,
            line_height=5,
            first_row_as_headings=True,
        ) as table:
            for row in (document.columns, *document.rows):
                cells = table.row()
                for text in row:
                    cells.cell(printable(text))
    if document.totals:
        pdf.ln(3)
        for index, (label, value) in enumerate(document.totals):
            last = index == len(document.totals) - 1
            pdf.set_font(FONT, "B" if last else "", 10 if last else 9)
            pdf.cell(140, 6, printable(label), align="R")
            pdf.cell(0, 6, printable(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if document.notes:
        pdf.ln(4)
        pdf.set_font(FONT, "", 8)
        for note in document.notes:
            pdf.multi_cell(0, 4, printable(note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
