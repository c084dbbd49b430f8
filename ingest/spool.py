"""The local spool: batches of line protocol kept on disk while InfluxDB cannot take them.

Append-only segment files under ``{data_dir}/spool/{client_id}/``. A record is
``MAGIC | u32 length | u32 crc32 | payload`` (payload: UTF-8 lines joined by newlines), fsynced
before ``append`` returns, so a broker acknowledgement sent afterwards is backed by the disk.
Records drain oldest first; the position is kept in a ``cursor`` file replaced atomically.
A torn or corrupt record (a crash mid-append, a damaged disk) is detected by its length and CRC,
counted and skipped; the scan resumes at the next intact record, so earlier and later records
are never lost with it.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

MAGIC: Final = b"MSP1"
_HEADER: Final = struct.Struct(">4sII")
SEGMENT_MAX_BYTES: Final = 16 * 1024 * 1024
RECORD_MAX_BYTES: Final = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Record:
    segment: int
    offset: int
    end: int
    lines: int


class Spool:
    """A durable FIFO of line-protocol batches."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.torn_records = 0
        self._records: deque[_Record] = deque()
        self._lines = 0
        cursor = self._read_cursor()
        segments = sorted(self._segments())
        for segment in segments:
            self._scan(segment, cursor)
        self._active = segments[-1] if segments else 1
        self._file = self._path(self._active).open("ab")
        self._size = self._file.tell()
        self._remove_consumed_segments()

    # -- state ---------------------------------------------------------------------------------
    @property
    def depth_records(self) -> int:
        """Return the number of batches waiting to be drained."""
        return len(self._records)

    @property
    def depth_lines(self) -> int:
        """Return the number of lines (points) waiting to be drained."""
        return self._lines

    def __bool__(self) -> bool:
        return bool(self._records)

    # -- writing -------------------------------------------------------------------------------
    def append(self, lines: list[str]) -> None:
        """Append one batch and fsync it; when this returns the batch survives a crash."""
        payload = "\n".join(lines).encode("utf-8")
        if self._size + len(payload) > SEGMENT_MAX_BYTES and self._size > 0:
            self._rotate()
        offset = self._size
        self._file.write(_HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._size += _HEADER.size + len(payload)
        self._records.append(_Record(self._active, offset, self._size, len(lines)))
        self._lines += len(lines)

    # -- draining ------------------------------------------------------------------------------
    def peek(self) -> list[str]:
        """Return the oldest batch without removing it (raise IndexError when empty)."""
        return self._read(self._records[0])

    def _read(self, record: _Record) -> list[str]:
        with self._path(record.segment).open("rb") as handle:
            handle.seek(record.offset + _HEADER.size)
            payload = handle.read(record.end - record.offset - _HEADER.size)
        return payload.decode("utf-8").split("\n")

    def peek_many(self, max_lines: int) -> tuple[list[str], int]:
        """Return the lines of the oldest batches, up to ``max_lines`` (at least one batch),
        and how many batches they are."""
        lines = self.peek()
        taken = 1
        for record in list(self._records)[1:]:
            if len(lines) + record.lines > max_lines:
                break
            lines += self._read(record)
            taken += 1
        return lines, taken

    def pop(self) -> None:
        """Mark the oldest batch drained (durably) and delete segments no longer needed."""
        record = self._records.popleft()
        self._lines -= record.lines
        self._write_cursor(record.segment, record.end)
        if not self._records or self._records[0].segment != record.segment:
            self._remove_consumed_segments()

    def close(self) -> None:
        """Close the active segment."""
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.directory / f"seg-{segment:08d}.log"

    def _segments(self) -> list[int]:
        return [int(p.name[4:12]) for p in self.directory.glob("seg-*.log")]

    def _rotate(self) -> None:
        self._file.close()
        self._active += 1
        self._file = self._path(self._active).open("ab")
        self._size = 0
        _fsync_dir(self.directory)

    def _scan(self, segment: int, cursor: tuple[int, int]) -> None:
        data = self._path(segment).read_bytes()
        offset = 0
        good_end = 0
        while offset < len(data):
            record_end = _valid_record_end(data, offset)
            if record_end is None:
                resync = data.find(MAGIC, offset + 1)
                self.torn_records += 1
                logger.warning(
                    "spool %s: torn or corrupt record at byte %d (%d bytes skipped)",
                    self._path(segment).name,
                    offset,
                    (resync if resync >= 0 else len(data)) - offset,
                )
                if resync < 0:
                    break
                offset = resync
                continue
            if (segment, offset) >= cursor:
                payload = data[offset + _HEADER.size : record_end]
                lines = payload.count(b"\n") + 1
                self._records.append(_Record(segment, offset, record_end, lines))
                self._lines += lines
            offset = good_end = record_end
        if good_end < len(data):
            # Nothing intact follows the last good record: cut the torn tail so that new
            # appends do not land behind garbage.
            with self._path(segment).open("r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())

    def _read_cursor(self) -> tuple[int, int]:
        try:
            segment, offset = (self.directory / "cursor").read_text().split()
            return int(segment), int(offset)
        except (FileNotFoundError, ValueError):
            return 0, 0

    def _write_cursor(self, segment: int, offset: int) -> None:
        tmp = self.directory / "cursor.tmp"
        with tmp.open("w") as handle:
            handle.write(f"{segment} {offset}\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.directory / "cursor")

    def _remove_consumed_segments(self) -> None:
        oldest_needed = self._records[0].segment if self._records else self._active
        for segment in self._segments():
            if segment < oldest_needed and segment != self._active:
                self._path(segment).unlink(missing_ok=True)


def _valid_record_end(data: bytes, offset: int) -> int | None:
    """Return where the record at ``offset`` ends when it is complete and intact, else None."""
    if offset + _HEADER.size > len(data):
        return None
    magic: bytes
    length: int
    crc: int
    magic, length, crc = _HEADER.unpack_from(data, offset)
    end = offset + _HEADER.size + length
    if magic != MAGIC or length > RECORD_MAX_BYTES or end > len(data):
        return None
    if zlib.crc32(data[offset + _HEADER.size : end]) != crc:
        return None
    return end


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
