"""Printed documents: what the PDF says, in which font, across pages (LINKS: text is text)."""

from __future__ import annotations

import io

from pypdf import PdfReader

from shared.pdf import PrintedDocument, PrintedParty, render_pdf

COLUMNS = ("#", "Description", "Net")


def _document(customer: str, rows: int = 3, description: str = "Work") -> PrintedDocument:
    return PrintedDocument(
        title="Invoice INV-7",
        facts=(("Due date", "2030-01-31"),),
        parties=(PrintedParty("Bill to", (customer,)),),
        columns=COLUMNS,
        rows=tuple((str(n), f"{description} {n}", "21,00 €") for n in range(1, rows + 1)),
        alignment="LLR",
        widths=(6, 70, 24),
        totals=(("Total", "63,00 €"),),
    )


def _read(content: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(content))
    return reader, "\n".join(page.extract_text() or "" for page in reader.pages)


def _fonts(reader: PdfReader) -> set[str]:
    names = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            names.add(str(font.get_object()["/BaseFont"]))
    return names


def test_latin_text_prints_in_the_standard_font_with_accents_and_the_euro_sign() -> None:
    reader, text = _read(render_pdf(_document("Žofia Müller-Núñez & Søn")))
    assert "Žofia Müller-Núñez & Søn" in text
    assert "63,00 €" in text
    assert all(name.startswith("/Helvetica") for name in _fonts(reader))


def test_text_beyond_the_standard_encoding_embeds_the_unicode_font() -> None:
    reader, text = _read(render_pdf(_document("Ли Ωμέγα")))
    assert "Ли Ωμέγα" in text
    assert all("DejaVu" in name for name in _fonts(reader))


def test_markup_and_links_print_as_typed() -> None:
    hostile = '<a href="https://evil.example">pay here</a>'
    _, text = _read(render_pdf(_document(hostile)))
    assert hostile in text.replace("\n", "")


def test_a_long_description_wraps_within_its_row_and_keeps_every_word() -> None:
    description = " ".join(f"word{n}" for n in range(60))
    _, text = _read(render_pdf(_document("Bob", rows=1, description=description)))
    flattened = " ".join(text.split())
    assert all(f"word{n}" in flattened for n in range(60))
    # The wrapped description does not overrun its column into the amount's.
    assert max(len(line) for line in text.splitlines()) < len(description)


def test_many_rows_go_on_over_pages_each_headed_by_the_columns() -> None:
    reader, text = _read(render_pdf(_document("Bob", rows=120)))
    assert len(reader.pages) >= 3
    assert all(f"Work {n}\n" in text or f"Work {n} " in text for n in (1, 60, 120))
    for page in reader.pages:
        assert "Description" in (page.extract_text() or "")
