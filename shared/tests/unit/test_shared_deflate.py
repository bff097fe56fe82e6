"""Deflate pieces that concatenate, and the ZIP64 writer that stores them without recompressing."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from shared.deflate import DeflateChunker, Zip64Writer, deflate_piece, inflate_pieces

CSV = b"id,name\r\n" + b"".join(f"{i},Customer {i}\r\n".encode() for i in range(50_000))


def _pieces(content: bytes, size: int = 40_000) -> list[bytes]:
    return [deflate_piece(content[i : i + size]) for i in range(0, len(content), size)]


def test_independently_deflated_pieces_join_into_one_stream() -> None:
    pieces = _pieces(CSV)
    assert len(pieces) > 10
    assert inflate_pieces(pieces) == CSV
    assert sum(map(len, pieces)) < len(CSV) / 3, "CSV shrinks even at the fastest level"


def _chunk(content: bytes, size: int) -> list[bytes]:
    chunker = DeflateChunker(io.BytesIO(content), size)
    pieces = []
    while (piece := chunker.next_piece()) is not None:
        pieces.append(piece)
    return pieces


@pytest.mark.clause("TERMINATION")
@pytest.mark.parametrize(
    "content", [CSV, os.urandom(3_000_000), b""], ids=["csv", "incompressible", "empty"]
)
def test_termination_chunks_are_cut_by_compressed_size_and_each_inflates_alone(
    content: bytes,
) -> None:
    size = 400_000  # CSV is 1 MB, about 250 kB deflated
    pieces = _chunk(content, size)
    assert inflate_pieces(pieces) == content, "the pieces join into one stream"
    assert b"".join(inflate_pieces([piece]) for piece in pieces) == content, "each one alone"
    assert all(len(piece) <= size + 70_000 for piece in pieces), "a piece stays near its size"
    if content is not CSV and len(content) > 2 * size:
        assert len(pieces) > 1, "what does not compress is cut by its own size"
    if content is CSV:
        assert len(pieces) == 1, "CSV is cut by what it compresses to, not by its own size"


@pytest.mark.clause("TERMINATION")
def test_termination_a_bundle_of_pieces_is_a_zip_any_reader_opens_and_verifies(
    tmp_path: Path,
) -> None:
    binary = os.urandom(70_000)
    path = tmp_path / "bundle.zip"
    with path.open("wb") as handle:
        bundle = Zip64Writer(handle)
        bundle.add_deflated(
            "billing-invoice.csv", _pieces(CSV), crc32=zlib.crc32(CSV), size=len(CSV)
        )
        bundle.add_deflated(
            "other.bin", _pieces(binary), crc32=zlib.crc32(binary), size=len(binary)
        )
        bundle.add_bytes("manifest.json", b'{"files": []}')
        bundle.close()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None, "every CRC checks out"
        assert archive.namelist() == ["billing-invoice.csv", "other.bin", "manifest.json"]
        assert archive.read("billing-invoice.csv") == CSV
        assert archive.read("other.bin") == binary
        assert archive.getinfo("billing-invoice.csv").file_size == len(CSV)
    unzip = shutil.which("unzip")
    if unzip is not None:  # where Info-ZIP is installed, it must agree
        checked = subprocess.run([unzip, "-t", str(path)], capture_output=True, check=False)
        assert b"No errors detected" in checked.stdout, checked.stdout


def test_a_wrong_crc_is_caught_by_a_reader() -> None:
    buffer = io.BytesIO()
    bundle = Zip64Writer(buffer)
    bundle.add_deflated("a.csv", _pieces(CSV), crc32=zlib.crc32(CSV) ^ 1, size=len(CSV))
    bundle.close()
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive,
        pytest.raises(zipfile.BadZipFile),
    ):
        archive.read("a.csv")
