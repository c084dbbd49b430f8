"""``GET /v1/export``: any range, raw or aggregated, of one or many stations (the logic).

The request is the network request (api.network: ``stations=`` or ``municipality=``, and every
parameter of the single-station series) plus:

- ``format``: ``csv`` (default) or ``ndjson``, streamed; or ``json``, one page of at most
  ``page_size`` rows (the 100,000-point rule of plain JSON answers stays) with a ``next``
  cursor; the same request with ``cursor=<next>`` continues where the page ended.
- gzip: with ``Accept-Encoding: gzip`` the stream is compressed (``Content-Encoding: gzip``).

Rows come station by station (in the order asked for), oldest first, one per reading (raw)
or per window; the layout is long (CSV: ``time, station, …``; NDJSON: ``{"station", "time",
"values", …}`` like the series points).

How it stays in constant memory: a raw export is one ``SELECT`` per station, read as InfluxDB's
chunked answer batch by batch (api.influx ``InfluxReader.stream``) and rendered batch by batch
in a worker thread; an aggregated one runs the series plan (api.series) over consecutive
slices of at most ``SLICE_WINDOWS`` windows (fewer when derived parameters must be computed
from raw readings: at most ``DERIVED_MAX_READINGS`` seconds a slice). Nothing is read from
InfluxDB faster than the client takes the answer.

Its limit is the work, not a row count: the range is clipped to each station's data and its
readings counted (api.cost) before anything is streamed; more than ``api_max_scan_values``
stored values in all is refused with 400 (the default, 10 million, is a year of 1-minute
readings of all 16 parameters of one station).
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import zlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from pydantic import Field

from api.aggregate import local_midnights
from api.influx import SeriesOut, StatementResult, StreamCheck
from api.models import AggPoint, RawPoint
from api.network import NetworkQuery
from api.series import (
    DERIVED_MAX_READINGS,
    INTERVAL_NS,
    MAX_POINTS,
    NS,
    SeriesPlan,
    SeriesRequestError,
)
from api.series_table import ReadingArrays, format_times, raw_points
from sensors import schema
from sensors.derived import DERIVED, derive

FORMATS: Final = ("csv", "ndjson", "json")
SLICE_WINDOWS: Final = 10_000  # windows of one aggregated slice (stored parameters only)
DEFAULT_PAGE: Final = 10_000
GZIP_LEVEL: Final = 1  # fast: the stream must keep pace with InfluxDB (issue 11: >= 0.7x)


class ExportQuery(NetworkQuery):
    """An export request (see the module docstring)."""

    format: str = Field(
        "csv", max_length=8, description="csv or ndjson (streamed), or json (paged)"
    )
    cursor: str | None = Field(
        None, max_length=512, description="json: the `next` of the previous page"
    )
    page_size: int = Field(
        DEFAULT_PAGE, ge=1, le=MAX_POINTS, description="json: rows per page (at most 100,000)"
    )


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a paged export continues: the station's index and the first instant not sent."""

    station: int
    start_ns: int


def fingerprint(query: ExportQuery) -> str:
    """Return a short digest of what a request asks for (everything but cursor and page)."""
    fields = query.model_dump(exclude={"cursor", "page_size"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def encode_cursor(query: ExportQuery, resume: Resume) -> str:
    """Return the opaque ``next`` cursor of a page."""
    doc = {"f": fingerprint(query), "i": resume.station, "t": resume.start_ns}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def decode_cursor(query: ExportQuery) -> Resume | None:
    """Return where the request continues (None: from the start), or raise (400)."""
    if query.cursor is None:
        return None
    text = query.cursor
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        station, start_ns, digest = doc["i"], doc["t"], doc["f"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SeriesRequestError("cursor: not a cursor this API gave out") from exc
    if not (isinstance(station, int) and isinstance(start_ns, int) and isinstance(digest, str)):
        raise SeriesRequestError("cursor: not a cursor this API gave out")
    if digest != fingerprint(query):
        raise SeriesRequestError(
            "cursor: it belongs to a different request; repeat the first page's parameters"
        )
    return Resume(station, start_ns)


def resume_plans(plans: tuple[SeriesPlan, ...], resume: Resume | None) -> list[SeriesPlan]:
    """Return the plans still to run, the first one starting where the cursor says."""
    if resume is None:
        return list(plans)
    if not 0 <= resume.station < len(plans):
        raise SeriesRequestError("cursor: not a cursor this API gave out")
    first = plans[resume.station]
    if not first.start_ns <= resume.start_ns <= first.end_ns:
        raise SeriesRequestError("cursor: not a cursor this API gave out")
    return [dataclasses.replace(first, start_ns=resume.start_ns), *plans[resume.station + 1 :]]


def check_raw_derived(plan: SeriesPlan) -> None:
    """Refuse (400) a raw export of a derived parameter defined on hourly or daily means."""
    if plan.interval != "raw":
        return
    means = [p for p in plan.derived if DERIVED[p].hourly or DERIVED[p].daily]
    if means:
        raise SeriesRequestError(
            f"{', '.join(means)}: defined on hourly or daily means, not per reading; "
            "choose an interval of 1h (or 1d)"
        )


def next_window_ns(plan: SeriesPlan, label_ns: int) -> int:
    """Return the start of the window after the one labelled ``label_ns``."""
    zone = plan.window_tz
    if zone is None:
        return label_ns + INTERVAL_NS[plan.interval]
    return int(local_midnights(label_ns, label_ns + 26 * 3600 * NS, zone)[1])


def slices(plan: SeriesPlan) -> list[SeriesPlan]:
    """Return an aggregated plan cut into consecutive slices at window boundaries.

    Each slice keeps the plan's query window clipped to its own bounds; slices outside the
    query window are left out. Cutting at window boundaries keeps every window whole.
    """
    step = INTERVAL_NS[plan.interval]
    windows = SLICE_WINDOWS
    if plan.derived:
        windows = max(1, min(windows, DERIVED_MAX_READINGS * NS // step))
    q_start, q_end = plan.query_window
    if q_end <= q_start:
        return []
    zone = plan.window_tz
    if zone is None:
        first_window = (q_start // step) * step
        bounds = list(range(first_window, q_end, step * windows))
    else:
        midnights = local_midnights(q_start, q_end, zone).tolist()
        bounds = midnights[::windows]
    bounds = [max(bound, q_start) for bound in bounds] + [q_end]
    out = []
    for low, high in itertools.pairwise(bounds):
        if high > low:
            out.append(
                dataclasses.replace(
                    plan,
                    start_ns=max(low, plan.start_ns),
                    end_ns=min(high, plan.end_ns),
                    query_start_ns=low,
                    query_end_ns=high,
                )
            )
    return out


def _cell(value: object) -> str:
    return "" if value is None else repr(value)


class Renderer:
    """Turns points into CSV or NDJSON text (and gzip), one batch at a time."""

    def __init__(self, plan: SeriesPlan, output: str, gzip: bool) -> None:
        self.plan = plan
        self.output = output
        self.raw = plan.interval == "raw"
        self.columns: list[tuple[str, str | None]] = (
            [(p, None) for p in plan.parameters]
            if self.raw
            else [(p, agg) for p in plan.parameters for agg in plan.aggs[p]]
        )
        self.with_qc = self.raw and plan.include_suspect
        self._zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None

    def encode(self, text: str) -> bytes:
        """Return text as the stream's bytes (compressed when asked)."""
        return self._out(text)

    def _out(self, text: str) -> bytes:
        data = text.encode()
        return self._zip.compress(data) if self._zip is not None else data

    def header(self) -> bytes:
        """Return the CSV header line (nothing for NDJSON)."""
        if self.output != "csv":
            return self._out("")
        names = [p if agg is None else f"{p}_{agg}" for p, agg in self.columns]
        if self.with_qc:
            names += [schema.qc_field(p) for p in self.plan.parameters]
            names += [schema.check_field(p) for p in self.plan.parameters]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(["time", "station", *names])
        return self._out(buffer.getvalue())

    def text(self, station_id: str, points: list[AggPoint] | list[RawPoint]) -> str:
        """Return the rows of some points of one station as text (not compressed)."""
        if self.output != "csv":
            return "".join(
                json.dumps({"station": station_id, **point}, separators=(",", ":")) + "\n"
                for point in points
            )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        params = self.plan.parameters
        for point in points:
            values: dict[str, Any] = dict(point["values"])
            if self.raw:
                row = [point["time"], station_id, *(_cell(values.get(p)) for p in params)]
                if self.with_qc:
                    qc: dict[str, str] = dict(point).get("qc", {})  # type: ignore[assignment]
                    checks: dict[str, str] = dict(point).get("checks", {})  # type: ignore[assignment]
                    row += [qc.get(p, "") for p in params]
                    row += [checks.get(p, "") for p in params]
            else:
                row = [point["time"], station_id]
                row += [_cell(values.get(p, {}).get(agg)) for p, agg in self.columns]
            writer.writerow(row)
        return buffer.getvalue()

    def rows(self, station_id: str, points: list[AggPoint] | list[RawPoint]) -> bytes:
        """Return the rows of some points of one station, compressed when asked."""
        return self._out(self.text(station_id, points))

    def end(self) -> bytes:
        """Return the end of the stream (the gzip trailer)."""
        return self._zip.flush() if self._zip is not None else b""


_CSV_SPECIAL: Final = frozenset(',"\r\n')


def _csv_text(value: str) -> str:
    """Return a text cell quoted as the csv module would, only when it needs it."""
    if _CSV_SPECIAL.isdisjoint(value):
        return value
    return '"' + value.replace('"', '""') + '"'


def raw_csv_text(plan: SeriesPlan, result: StatementResult, with_qc: bool) -> tuple[str, int]:
    """Return CSV rows of raw readings, column by column (the export's fast path), and how
    many. The same cells as ``api.series_table.raw_points`` rendered by ``Renderer.text``:
    a value only where present (and good, unless suspect values are included), derived values
    rounded as everywhere, rows without any value left out."""
    wanted = tuple(dict.fromkeys((*plan.stored, *plan.derived_inputs)))
    readings = ReadingArrays(result, wanted)
    size = readings.size
    if size == 0:
        return "", 0
    present = np.zeros(size, dtype=np.bool_)
    values: dict[str, list[str]] = {}
    flags: dict[str, list[str]] = {}
    checks: dict[str, list[str]] = {}
    inputs = {p: readings.usable(p, plan.include_suspect) for p in plan.derived_inputs}
    computed = derive(inputs, readings.good, plan.derived) if plan.derived else {}
    for parameter in plan.parameters:
        if parameter in computed:
            column = computed[parameter].rounded()
            good = computed[parameter].good
        else:
            column = readings.usable(parameter, plan.include_suspect)
            good = readings.good[parameter]
        finite = np.isfinite(column)
        present |= finite
        shown = finite.tolist()
        values[parameter] = [
            repr(v) if ok else "" for v, ok in zip(column.tolist(), shown, strict=True)
        ]
        if with_qc:
            flags[parameter] = [
                ("good" if g else "suspect") if ok else ""
                for g, ok in zip(good.tolist(), shown, strict=True)
            ]
            failed = readings.checks.get(parameter) if parameter not in computed else None
            checks[parameter] = (
                [
                    _csv_text(c) if ok and not g and isinstance(c, str) and c else ""
                    for c, g, ok in zip(failed, good.tolist(), shown, strict=True)
                ]
                if failed is not None
                else [""] * size
            )
    keep = np.flatnonzero(present).tolist()
    labels = format_times(readings.ts[keep].tolist()) if keep else []
    station = _csv_text(plan.station_id)
    columns = [values[p] for p in plan.parameters]
    if with_qc:
        columns += [flags[p] for p in plan.parameters] + [checks[p] for p in plan.parameters]
    lines = [
        ",".join((label, station, *(column[k] for column in columns)))
        for label, k in zip(labels, keep, strict=True)
    ]
    return ("\n".join(lines) + "\n") if lines else "", len(lines)


@dataclass(slots=True)
class RawBatch:
    """The readings of one batch of a raw stream, rendered, and the newest time it held."""

    body: bytes
    rows: int
    last_ns: int | None
    points: list[RawPoint]


def raw_batch(
    plan: SeriesPlan, check: StreamCheck, lines: bytes, renderer: Renderer | None
) -> RawBatch:
    """Return the readings of some chunk lines of a raw statement (CPU work: a worker thread).

    With a renderer, they are rendered (streams); without, kept as points (JSON pages).
    """
    points: list[RawPoint] = []
    texts: list[str] = []
    counted = 0
    last_ns: int | None = None
    for line in lines.splitlines():
        if not line.strip():
            continue
        columns, rows = check.rows(line)
        if not rows:
            continue
        at = columns.index("time")
        last = rows[-1][at]
        last_ns = last if isinstance(last, int) else last_ns
        result = StatementResult.model_construct(
            series=[SeriesOut.model_construct(name=schema.READINGS, columns=columns, values=rows)]
        )
        if renderer is not None and renderer.output == "csv":
            text, count = raw_csv_text(plan, result, renderer.with_qc)
            texts.append(text)
            counted += count
        else:
            points.extend(raw_points(plan, result))
    if renderer is None:
        return RawBatch(b"", len(points), last_ns, points)
    if renderer.output == "csv":
        return RawBatch(renderer.encode("".join(texts)), counted, last_ns, [])
    return RawBatch(renderer.rows(plan.station_id, points), len(points), last_ns, [])
