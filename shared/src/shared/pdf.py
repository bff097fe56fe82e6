"""Printed documents as PDF (fpdf2): a title, facts, parties, a table of lines, totals and
notes. Services describe a document; this lays it out, in the standard Helvetica when every
character is in its encoding, else in the bundled Unicode font (embedded, ten times slower).

Text is drawn as text, never interpreted: user-written markup or links print as typed (LINKS),
and characters the font lacks print as a replacement mark instead of failing the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fpdf import FPDF

FONTS = Path(__file__).parent / "fonts"
FONT = "DejaVu"
# The standard fonts need no embedding; a document they cannot print embeds DejaVu.
STANDARD_FONT, STANDARD_ENCODING = "Helvetica", "windows-1252"
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


def _texts(document: PrintedDocument) -> Iterator[str]:
    yield document.title
    for pair in (*document.facts, *document.totals):
        yield from pair
    for party in document.parties:
        yield party.label
        yield from party.lines
    for row in (document.columns, *document.rows):
        yield from row
    yield from document.notes


def _standard_fonts_suffice(document: PrintedDocument) -> bool:
    """Whether every character is in the standard PDF fonts' encoding (Windows-1252: the
    Latin alphabets of the mail languages, the euro sign)."""
    try:
        for text in _texts(document):
            text.encode(STANDARD_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def render_pdf(document: PrintedDocument) -> bytes:
    """The document as PDF bytes (A4)."""
    # Imported when first needed: fpdf2 takes a second to import, on every service start.
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(format="A4")
    pdf.set_creator("Quittance")
    if _standard_fonts_suffice(document):
        # Helvetica is in every PDF reader: nothing to parse or embed, a tenth of the time.
        font = STANDARD_FONT
        pdf.core_fonts_encoding = STANDARD_ENCODING
    else:
        font = FONT
        pdf.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        pdf.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_title(printable(document.title))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font(font, "B", 16)
    pdf.multi_cell(0, 9, printable(document.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_font(font, "", 9)
    for label, value in document.facts:
        pdf.cell(40, 5, printable(label))
        pdf.cell(0, 5, printable(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    for party in document.parties:
        pdf.set_font(font, "B", 9)
        pdf.cell(0, 5, printable(party.label), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(font, "", 9)
        for line in party.lines:
            pdf.multi_cell(0, 5, printable(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    if document.columns:
        pdf.ln(2)
        _Table(pdf, font, document).draw()
    if document.totals:
        pdf.ln(3)
        for index, (label, value) in enumerate(document.totals):
            last = index == len(document.totals) - 1
            pdf.set_font(font, "B" if last else "", 10 if last else 9)
            pdf.cell(140, 6, printable(label), align="R")
            pdf.cell(0, 6, printable(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if document.notes:
        pdf.ln(4)
        pdf.set_font(font, "", 8)
        for note in document.notes:
            pdf.multi_cell(0, 4, printable(note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


class _Table:
    """The lines table, drawn cell by cell: a cell wraps only when its text is wider than the
    column (fpdf2's own table lays every cell out twice, most of a document's time)."""

    LINE = 5.0
    FILL = 245

    def __init__(self, pdf: FPDF, font: str, document: PrintedDocument) -> None:
        self.pdf, self.font = pdf, font
        count = len(document.columns)
        relative = document.widths or (1,) * count
        self.widths = [pdf.epw * share / sum(relative) for share in relative]
        self.alignment = document.alignment or "L" * count
        self.heading = tuple(printable(text) for text in document.columns)
        self.rows = [tuple(printable(text) for text in row) for row in document.rows]

    def draw(self) -> None:
        self.pdf.set_fill_color(self.FILL)
        self._row(self.heading, bold=True, fill=False)
        for index, row in enumerate(self.rows):
            self._row(row, bold=False, fill=index % 2 == 0)

    def _lines(self, text: str, width: float) -> list[str]:
        from fpdf.enums import MethodReturnValue

        pdf = self.pdf
        if "\n" not in text and pdf.get_string_width(text) <= width - 2 * pdf.c_margin:
            return [text]
        lines = pdf.multi_cell(width, self.LINE, text, dry_run=True, output=MethodReturnValue.LINES)
        assert isinstance(lines, list)
        return lines

    def _row(self, cells: tuple[str, ...], *, bold: bool, fill: bool) -> None:
        pdf = self.pdf
        pdf.set_font(self.font, "B" if bold else "", 9)
        wrapped = [self._lines(text, width) for text, width in zip(cells, self.widths, strict=True)]
        height = max(len(lines) for lines in wrapped) * self.LINE
        if not bold and pdf.will_page_break(height):
            pdf.add_page()
            self._row(self.heading, bold=True, fill=False)  # each page heads its columns
            pdf.set_font(self.font, "", 9)
        x, y = pdf.l_margin, pdf.get_y()
        if fill:
            pdf.rect(x, y, pdf.epw, height, style="F")
        for lines, width, align in zip(wrapped, self.widths, self.alignment, strict=True):
            for number, line in enumerate(lines):
                pdf.set_xy(x, y + number * self.LINE)
                pdf.cell(width, self.LINE, line, align=align)
            pdf.rect(x, y, width, height)
            x += width
        pdf.set_xy(pdf.l_margin, y + height)
