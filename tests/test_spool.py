"""The spool keeps every fsynced batch, in order, across restarts and torn or corrupt records."""

from __future__ import annotations

from ingest import spool as spool_module
from ingest.spool import Spool


def test_fifo_across_reopen(tmp_path):
    spool = Spool(tmp_path)
    for k in range(5):
        spool.append([f"m v={k}i {k}", f"m w={k}i {k}"])
    assert (spool.depth_records, spool.depth_lines) == (5, 10)
    assert spool.peek() == ["m v=0i 0", "m w=0i 0"]
    spool.pop()
    spool.close()
    reopened = Spool(tmp_path)
    assert (reopened.depth_records, reopened.depth_lines) == (4, 8)
    drained = []
    while reopened:
        drained.append(reopened.peek()[0])
        reopened.pop()
    assert drained == [f"m v={k}i {k}" for k in range(1, 5)]
    reopened.close()
    with Spool(tmp_path) as empty:
        assert not empty


def test_torn_tail_is_skipped_and_earlier_records_kept(tmp_path):
    spool = Spool(tmp_path)
    spool.append(["a 1"])
    spool.append(["b 2"])
    spool.append(["c 3 torn"])
    spool.close()
    [segment] = tmp_path.glob("seg-*.log")
    segment.write_bytes(segment.read_bytes()[:-3])  # a crash in the middle of the last append
    reopened = Spool(tmp_path)
    assert reopened.torn_records == 1
    assert reopened.peek() == ["a 1"]
    reopened.pop()
    assert reopened.peek() == ["b 2"]
    reopened.pop()
    reopened.append(["d 4"])  # lands after the cut, readable
    reopened.close()
    with Spool(tmp_path) as again:
        assert again.torn_records == 0
        assert again.peek() == ["d 4"]


def test_corrupt_middle_record_skipped_later_ones_kept(tmp_path):
    spool = Spool(tmp_path)
    for name in ("first", "second", "third"):
        spool.append([f"{name} 1"])
    spool.close()
    [segment] = tmp_path.glob("seg-*.log")
    data = bytearray(segment.read_bytes())
    data[data.index(b"second") + 1] ^= 0xFF  # a flipped bit in the second record's payload
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path)
    assert reopened.torn_records == 1
    kept = []
    while reopened:
        kept.append(reopened.peek())
        reopened.pop()
    reopened.close()
    assert kept == [["first 1"], ["third 1"]]


def test_segments_rotate_and_drained_ones_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "SEGMENT_MAX_BYTES", 64)
    spool = Spool(tmp_path)
    for k in range(6):
        spool.append([f"m v={k}i {k}" + "x" * 30])
    assert len(list(tmp_path.glob("seg-*.log"))) >= 3
    while spool:
        spool.pop()
    spool.close()
    assert len(list(tmp_path.glob("seg-*.log"))) == 1  # only the active one


def test_peek_many_coalesces_whole_batches_up_to_a_line_budget(tmp_path):
    with Spool(tmp_path) as spool:
        for k in range(4):
            spool.append([f"m v={k}i {k}", f"m w={k}i {k}", f"m x={k}i {k}"])
        lines, records = spool.peek_many(7)
        assert records == 2
        assert lines == ["m v=0i 0", "m w=0i 0", "m x=0i 0", "m v=1i 1", "m w=1i 1", "m x=1i 1"]
        assert spool.peek_many(1) == (["m v=0i 0", "m w=0i 0", "m x=0i 0"], 1)
