"""``meltemi rollup``: the hourly and daily rollups (sensors.rollups), kept right by reconciling.

How windows that changed are found: the ingester's history is write-once (a stored value is
never replaced; late and replayed readings only *add* values), so a window changed exactly when
one of its per-parameter value counts changed. A pass asks InfluxDB for the counts per station
and hour (``SELECT count(*) … GROUP BY time(1h), station``, one cheap statement) and for the
``{p}__all_count`` fields of the rollups over the same range; every (station, UTC day) with a
differing hour is recomputed from its raw readings (all 24 hours and the day, overwritten:
idempotent, so a replay or a rerun changes nothing). Nothing is learnt from MQTT: this process
needs no broker identity, misses nothing while it was down, and works the same on InfluxDB
1.x/2.x/3.x (plain points and InfluxQL; no continuous query, no task).

``meltemi rollup run`` passes over the last ``rollup_recent_hours`` every ``rollup_interval_s``
(late readings of the last hours are in within seconds) and over the whole back-fill horizon
every ``rollup_deep_interval_s`` (a station's spool replaying a day of readings is in within
minutes). ``meltemi rollup rebuild [--days N]`` recomputes every day of the range at once.

After each pass it writes one ``rollup_state`` point: ``pass_ns`` (its time) when the pass
started, ``deep_ns`` when the last completed whole-horizon pass started, ``from_ns`` the oldest
instant rollups are kept from. The API (api.rollups) reads rollups only for windows before
``pass_ns`` and after ``from_ns``, only while the state is fresh, and never for an hour into
which it saw (on its live feed) a reading arrive that the passes cannot have seen yet; the rest
of a request is answered from raw readings as before.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Final

import httpx

from api.influx import SeriesOut, StatementResult
from api.influxql import InfluxQL, quote_identifier, quote_string, time_literal
from api.queries import raw_readings
from api.series_table import ReadingArrays
from sensors import schema
from sensors.catalog import PARAMETER_IDS
from sensors.registry import Station, StationRegistry, open_registry
from sensors.rollups import (
    ALL_FIELDS,
    DAY_NS,
    HOUR_NS,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_STATE,
    Fields,
    combine,
    hourly,
)
from sensors.settings import Settings

logger = logging.getLogger(__name__)

NS: Final = 1_000_000_000
CHUNK_ROWS: Final = 10_000
WRITE_BATCH: Final = 5_000  # lines per /write
RUN_GAP_NS: Final = 6 * HOUR_NS  # changed hours closer than this are read in one statement


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one reconciliation pass did."""

    started_ns: int
    days_rebuilt: int


def _line(measurement: str, station_id: str, fields: dict[str, float | int], ts_ns: int) -> str:
    parts = []
    for name in sorted(fields):
        value = fields[name]
        parts.append(f"{name}={value}i" if isinstance(value, int) else f"{name}={value!r}")
    return f"{measurement},{schema.STATION_TAG}={station_id} {','.join(parts)} {ts_ns}"


class RollupKeeper:
    """Reads counts and raw readings from InfluxDB and writes the rollup points."""

    def __init__(self, settings: Settings, registry: StationRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else open_registry(settings)
        headers = {"Accept": "application/json"}
        auth: httpx.Auth | None = None
        if settings.influx_token is not None:
            headers["Authorization"] = "Token " + settings.influx_token.get_secret_value()
        elif settings.influx_username is not None:
            secret = settings.influx_password
            auth = httpx.BasicAuth(
                settings.influx_username, secret.get_secret_value() if secret else ""
            )
        self.client = httpx.Client(
            base_url=settings.influx_url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(max(settings.influx_timeout_s, 60.0)),
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # --- InfluxDB -----------------------------------------------------------------------

    def query(self, text: InfluxQL) -> list[SeriesOut]:
        """Return the series of one statement (chunked answer, checked complete)."""
        params = {
            "db": self.settings.influx_db,
            "q": text,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(CHUNK_ROWS),
        }
        response = self.client.get("/query", params=params)
        response.raise_for_status()
        merged: list[SeriesOut] = []
        open_series = False
        for line in response.content.splitlines():
            if not line.strip():
                continue
            answer = json.loads(line)
            if answer.get("error"):
                raise RuntimeError(f"InfluxDB: {answer['error']}")
            for result in answer.get("results", []):
                if result.get("error"):
                    raise RuntimeError(f"InfluxDB: {result['error']}")
                for series in result.get("series", []):
                    tags = series.get("tags", {}) or {}
                    values = series.get("values", [])
                    last = merged[-1] if merged else None
                    if open_series and last is not None and last.tags == tags:
                        last.values.extend(values)
                    else:
                        merged.append(
                            SeriesOut.model_construct(
                                name=series.get("name", ""),
                                tags=tags,
                                columns=series["columns"],
                                values=list(values),
                            )
                        )
                    open_series = bool(series.get("partial", False))
        return merged

    def write(self, lines: list[str]) -> None:
        """Write line protocol (nanosecond precision)."""
        for at in range(0, len(lines), WRITE_BATCH):
            response = self.client.post(
                "/write",
                params={"db": self.settings.influx_db, "precision": "ns"},
                content="\n".join(lines[at : at + WRITE_BATCH]).encode(),
            )
            if response.status_code != 204:
                raise RuntimeError(
                    f"InfluxDB refused the rollup write ({response.status_code}): "
                    f"{response.text[:300]}"
                )

    # --- counts -------------------------------------------------------------------------

    def _counts(self, text: InfluxQL, suffix: str) -> dict[tuple[str, int], dict[str, int]]:
        counts: dict[tuple[str, int], dict[str, int]] = {}
        for series in self.query(text):
            station_id = series.tags.get(schema.STATION_TAG, "")
            at = {name: k for k, name in enumerate(series.columns)}
            for row in series.values:
                ts = row[at["time"]]
                if not isinstance(ts, int):
                    continue
                figures = {}
                for p in PARAMETER_IDS:
                    k = at.get(f"{p}{suffix}")
                    value = row[k] if k is not None else None
                    if isinstance(value, int | float) and value:
                        figures[p] = int(value)
                counts[(station_id, ts)] = figures
        return counts

    def dirty_hours(
        self, start_ns: int, end_ns: int, *, every: bool = False
    ) -> set[tuple[str, int]]:
        """Return the (station, hour) whose raw value counts differ from their rollups
        (registered stations and parameters only); with ``every``, each hour with data."""
        start_ns = start_ns // HOUR_NS * HOUR_NS
        where = f"WHERE time >= {time_literal(start_ns)} AND time < {time_literal(end_ns)}"
        station = quote_identifier(schema.STATION_TAG)
        names = sorted(PARAMETER_IDS)
        raw_fields = ", ".join(
            f"count({quote_identifier(p)}) AS {quote_identifier(p)}" for p in names
        )
        raw = self._counts(
            InfluxQL(
                f"SELECT {raw_fields} FROM {quote_identifier(schema.READINGS)} {where} "
                f"GROUP BY time(1h), {station} fill(none)"
            ),
            "",
        )
        rolled_fields = ", ".join(quote_identifier(f"{p}__all_count") for p in names)
        rolled = self._counts(
            InfluxQL(
                f"SELECT {rolled_fields} FROM {quote_identifier(ROLLUP_1H)} {where} "
                f"GROUP BY {station}"
            ),
            "__all_count",
        )
        dirty = set()
        for key in raw.keys() | rolled.keys():
            registered = self.registry.get(key[0])
            if registered is None:
                continue  # not registered: the API serves nothing of it
            mine = set(registered.parameters)
            have = {p: n for p, n in raw.get(key, {}).items() if p in mine}
            kept = {p: n for p, n in rolled.get(key, {}).items() if p in mine}
            if have != kept or (every and have):
                dirty.add(key)
        return dirty

    # --- recomputing --------------------------------------------------------------------

    def rebuild_hours(self, station: Station, hours: list[int]) -> set[int]:
        """Recompute some hours of one station from raw, then the UTC days holding them from
        their hourly points; return those days."""
        runs: list[list[int]] = []
        for hour in sorted(hours):
            if runs and hour - runs[-1][-1] <= RUN_GAP_NS:
                runs[-1].append(hour)
            else:
                runs.append([hour])
        lines = []
        for run in runs:
            statement = raw_readings(
                station.id,
                station.parameters,
                start_ns=run[0],
                end_ns=run[-1] + HOUR_NS,
                limit=None,
            )
            result = StatementResult.model_construct(series=self.query(statement)[:1])
            readings = ReadingArrays(result, station.parameters)
            if readings.size == 0:
                continue
            values = {p: readings.values[p] for p in station.parameters}
            computed = hourly(readings.ts, values, readings.good)
            lines += [_line(ROLLUP_1H, station.id, fields, ts) for ts, fields in computed.items()]
        self.write(lines)
        days = {hour // DAY_NS * DAY_NS for hour in hours}
        day_lines = []
        for day in sorted(days):
            fields = combine(self.hour_points(station.id, day))
            if fields:
                day_lines.append(_line(ROLLUP_1D, station.id, fields, day))
        self.write(day_lines)
        return days

    def hour_points(self, station_id: str, day_ns: int) -> list[Fields]:
        """Return the fields of a station's hourly points of one UTC day, as written."""
        text = InfluxQL(
            f"SELECT * FROM {quote_identifier(ROLLUP_1H)} "
            f"WHERE {quote_identifier(schema.STATION_TAG)} = {quote_string(station_id)} "
            f"AND time >= {time_literal(day_ns)} AND time < {time_literal(day_ns + DAY_NS)}"
        )
        points = []
        for series in self.query(text):
            for row in series.values:
                fields: Fields = {}
                for name, value in zip(series.columns, row, strict=True):
                    if name not in ALL_FIELDS or value is None or isinstance(value, bool):
                        continue
                    if not isinstance(value, int | float):
                        continue
                    # JSON writes a whole float without a point: keep each field's type.
                    fields[name] = int(value) if name.endswith("_count") else float(value)
                points.append(fields)
        return points

    def reconcile(self, start_ns: int, end_ns: int, *, every: bool = False) -> int:
        """Rebuild every changed hour in [start, end) and its day (with ``every``: each hour
        with data); return how many station-days were touched."""
        by_station: dict[str, list[int]] = {}
        for station_id, hour in self.dirty_hours(start_ns, end_ns, every=every):
            by_station.setdefault(station_id, []).append(hour)
        touched = 0
        for station_id, hours in sorted(by_station.items()):
            station = self.registry.get(station_id)
            if station is None:
                continue  # not registered: the API serves nothing of it
            touched += len(self.rebuild_hours(station, hours))
        return touched

    def rebuild(self, start_ns: int, end_ns: int) -> int:
        """Recompute every registered station's hours with data in [start, end)."""
        return self.reconcile(start_ns // DAY_NS * DAY_NS, end_ns, every=True)

    # --- state --------------------------------------------------------------------------

    def read_from_ns(self) -> int | None:
        """Return the oldest instant rollups are kept from (None: no state yet)."""
        field = quote_identifier("from_ns")
        series = self.query(
            InfluxQL(f"SELECT last({field}) AS {field} FROM {quote_identifier(ROLLUP_STATE)}")
        )
        for one in series:
            for row in one.values:
                value = row[one.columns.index("from_ns")]
                if isinstance(value, int):
                    return value
        return None

    def write_state(self, pass_started_ns: int, from_ns: int, deep_ns: int) -> None:
        """Record a completed pass (see the module docstring)."""
        fields = f"pass_ns={int(pass_started_ns)}i,from_ns={int(from_ns)}i,deep_ns={int(deep_ns)}i"
        self.write([f"{ROLLUP_STATE} {fields} {int(pass_started_ns)}"])

    def run_pass(self, start_ns: int, now_ns: int, from_ns: int, deep_ns: int) -> PassResult:
        """Reconcile [start, now) and record the pass."""
        rebuilt = self.reconcile(start_ns, now_ns + HOUR_NS)
        self.write_state(now_ns, from_ns, deep_ns)
        return PassResult(now_ns, rebuilt)


def _horizon_ns(settings: Settings, now_ns: int) -> int:
    return now_ns - int(settings.backfill_horizon_days * DAY_NS) - DAY_NS


def rebuild(settings: Settings, days: float | None) -> int:
    """``meltemi rollup rebuild``: recompute the days of the range; return the exit code."""
    keeper = RollupKeeper(settings)
    try:
        now_ns = time.time_ns()
        start_ns = (
            (_horizon_ns(settings, now_ns) if days is None else now_ns - int(days * DAY_NS))
            // DAY_NS
            * DAY_NS
        )
        rebuilt = keeper.rebuild(start_ns, now_ns)
        known = keeper.read_from_ns()
        keeper.write_state(now_ns, start_ns if known is None else min(known, start_ns), now_ns)
        logger.info("rollups rebuilt: %d station-days from %d", rebuilt, start_ns)
        return 0
    finally:
        keeper.close()


def _passes(settings: Settings, stop: threading.Event) -> Iterator[tuple[int, bool]]:
    """Yield (now_ns, deep) for each pass until ``stop`` is set."""
    next_deep = 0.0
    while not stop.is_set():
        started = time.monotonic()
        deep = started >= next_deep
        if deep:
            next_deep = started + settings.rollup_deep_interval_s
        yield time.time_ns(), deep
        stop.wait(max(0.0, settings.rollup_interval_s - (time.monotonic() - started)))


def run(settings: Settings) -> int:
    """``meltemi rollup run``: reconcile until SIGINT/SIGTERM; return the exit code."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    keeper = RollupKeeper(settings)
    deep_ns = 0  # when the last completed deep pass started (none yet)
    try:
        for now_ns, deep in _passes(settings, stop):
            try:
                horizon = _horizon_ns(settings, now_ns) // DAY_NS * DAY_NS
                known = keeper.read_from_ns()
                if deep:
                    start = horizon
                    from_ns = horizon if known is None else min(known, horizon)
                else:
                    start = now_ns - int(settings.rollup_recent_hours * HOUR_NS)
                    from_ns = known if known is not None else now_ns + DAY_NS
                result = keeper.run_pass(start, now_ns, from_ns, now_ns if deep else deep_ns)
                if deep:
                    deep_ns = now_ns
                logger.info(
                    "rollup pass (%s): %d station-days rebuilt",
                    "deep" if deep else "recent",
                    result.days_rebuilt,
                )
            except (httpx.HTTPError, RuntimeError) as exc:
                logger.warning("rollup pass failed: %s; retrying", exc)
    finally:
        keeper.close()
    return 0
