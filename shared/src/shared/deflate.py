"""Deflate in pieces that concatenate, and a ZIP64 writer that takes them as they are.

Each chunk of a file is deflated on its own and ends on a byte boundary (a sync flush), so the
chunks, joined and closed by an empty final block, are one valid deflate stream. A participant
compresses its slice once, for the trip to retention; retention writes those bytes into the
bundle without inflating and deflating hundreds of megabytes again.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

LEVEL = 1  # CSV shrinks four- to sixfold even at the fastest level
FINAL_BLOCK = b"\x03\x00"  # an empty, final, fixed-Huffman block: ends the stream


def deflate_piece(data: bytes, level: int = LEVEL) -> bytes:
    """Raw deflate of one chunk, ending on a byte boundary without closing the stream."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


READ_BYTES = 64 * 1024  # input per step; a piece overshoots its size by at most about this


class DeflateChunker:
    """Cuts a file into deflate pieces of about `size` compressed bytes, each inflatable alone.

    One compressor runs over the whole file (CSV compresses better in long runs); a full flush
    ends each piece on a byte boundary with the history reset, so the pieces concatenate into
    one stream and any one of them inflates without the others.
    """

    def __init__(self, handle: IO[bytes], size: int, level: int = LEVEL) -> None:
        self.handle = handle
        self.size = size
        self.read_bytes = min(READ_BYTES, size)
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.done = False

    def next_piece(self) -> bytes | None:
        """The next piece, or None once the file is used up."""
        if self.done:
            return None
        out: list[bytes] = []
        length = consumed = 0
        # Stop while the output still has room for a read's worth, plus what zlib holds back.
        while consumed == 0 or length + 2 * self.read_bytes <= self.size:
            block = self.handle.read(self.read_bytes)
            if not block:
                self.done = True
                break
            consumed += len(block)
            data = self.compressor.compress(block)
            out.append(data)
            length += len(data)
        if consumed == 0:
            return None
        out.append(self.compressor.flush(zlib.Z_FULL_FLUSH))
        return b"".join(out)


def inflate_pieces(pieces: list[bytes]) -> bytes:
    """The bytes deflated into pieces (for checks and tests)."""
    return zlib.decompress(b"".join(pieces) + FINAL_BLOCK, -15)


@dataclass
class _Entry:
    name: bytes
    offset: int
    crc32: int
    size: int
    compressed: int


class Zip64Writer:
    """Writes a ZIP (ZIP64 sizes, UTF-8 names) whose entries arrive already deflated."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.position = 0
        self.entries: list[_Entry] = []
        now = time.gmtime()
        self._time = (now.tm_hour << 11) | (now.tm_min << 5) | (now.tm_sec // 2)
        self._date = ((now.tm_year - 1980) << 9) | (now.tm_mon << 5) | now.tm_mday

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.position += len(data)

    def add_deflated(self, name: str, pieces: Iterable[bytes], *, crc32: int, size: int) -> None:
        """Add an entry from deflate pieces (an iterable of bytes); crc32 and size are of the
        uncompressed content, which the caller knows (the participant computed them)."""
        raw_name = name.encode()
        offset = self.position
        self._write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                45,
                0x0800,
                8,
                self._time,
                self._date,
                crc32,
                0xFFFFFFFF,
                0xFFFFFFFF,
                len(raw_name),
                20,
            )
            + raw_name
        )
        sizes_at = self.position + 4  # the ZIP64 extra field's sizes, filled in below
        self._write(struct.pack("<HHQQ", 0x0001, 16, size, 0))
        compressed = 0
        for piece in pieces:
            self._write(piece)
            compressed += len(piece)
        self._write(FINAL_BLOCK)
        compressed += len(FINAL_BLOCK)
        end = self.position
        self.out.seek(sizes_at)
        self.out.write(struct.pack("<QQ", size, compressed))
        self.out.seek(end)
        self.entries.append(_Entry(raw_name, offset, crc32, size, compressed))

    def add_bytes(self, name: str, content: bytes) -> None:
        """Add a small entry from its content."""
        self.add_deflated(
            name, [deflate_piece(content, 6)], crc32=zlib.crc32(content), size=len(content)
        )

    def close(self) -> None:
        """Write the central directory and the (ZIP64) end records."""
        start = self.position
        for entry in self.entries:
            self._write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (3 << 8) | 45,
                    45,
                    0x0800,
                    8,
                    self._time,
                    self._date,
                    entry.crc32,
                    0xFFFFFFFF,
                    0xFFFFFFFF,
                    len(entry.name),
                    28,
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    0xFFFFFFFF,
                )
                + entry.name
                + struct.pack("<HHQQQ", 0x0001, 24, entry.size, entry.compressed, entry.offset)
            )
        size = self.position - start
        end64 = self.position
        count = len(self.entries)
        self._write(
            struct.pack(
                "<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, count, count, size, start
            )
        )
        self._write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        self._write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                0xFFFFFFFF,
                0xFFFFFFFF,
                0,
            )
        )
