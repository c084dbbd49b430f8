"""``GET /v1/stations/{id}/fire-weather``: the daily Canadian FWI System of a station.

Inputs and the missing-day rule are sensors/fire_weather.py's: the mean of the readings from
09:30 to 10:30 UTC (noon standard time) for temperature, humidity and wind, the 24-h rain sum
to 10:00 UTC, and a restart from 85/6/15 after any day without inputs. The chain starts every
year on 1 March, so a day's codes do not depend on the requested range. Good and suspect
values are both used (a flat line of daily inputs would otherwise vanish); refused values never
reach storage. Classes are EFFIS's; this is not the Greek civil protection's fire-risk map.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Final, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import ReaderDep, StationDep
from api.influxql import DURATIONS, InfluxQL, quote_identifier, quote_string, time_literal
from sensors import schema
from sensors.fire_weather import (
    NOON_HALF_WINDOW,
    FireWeatherDay,
    NoonInputs,
    fire_weather_days,
    noon,
    noon_inputs,
    season_start,
)
from sensors.fwi import EFFIS_LABELS, EFFIS_SOURCE, StartReason

router = APIRouter(tags=["civil protection"])

MAX_DAYS: Final = 366
NS: Final = 1_000_000_000
OFFICIAL_MAP: Final = "https://civilprotection.gov.gr/"
_NOON_INPUTS: Final = ("air_temperature", "relative_humidity", "wind_speed")
# GROUP BY time(1d, 36001s): windows (10:00:00, 10:00:00] of consecutive days at second
# precision, so a reading at exactly 10:00 (its rain: since the previous reading) ends its day.
_RAIN_OFFSET: Final = InfluxQL("36001s")
_NOON_OFFSET: Final = InfluxQL("30m")  # GROUP BY time(1h, 30m): windows 09:30-10:30 UTC


class FireWeatherInputsOut(BaseModel):
    """The inputs used for a day (None: missing)."""

    air_temperature: float | None
    relative_humidity: float | None
    wind_speed_kmh: float | None
    rain_24h_mm: float | None


class CompletenessOut(BaseModel):
    """How many readings gave the inputs."""

    noon_readings: int
    rain_readings: int


class CodesOut(BaseModel):
    """The six codes and the daily severity rating."""

    ffmc: float
    dmc: float
    dc: float
    isi: float
    bui: float
    fwi: float
    dsr: float


class FireWeatherDayOut(BaseModel):
    """One day of the answer."""

    day: dt.date
    inputs: FireWeatherInputsOut
    completeness: CompletenessOut
    codes: CodesOut | None
    effis_class: str | None
    effis_label: str | None
    start: StartReason | None
    missing_days: int | None
    missing: str | None


class FireWeatherOut(BaseModel):
    """The JSON answer."""

    station: str
    latitude: float
    method: str
    classes: str
    official_fire_risk_map: str
    days: list[FireWeatherDayOut]


def _parse_day(text: str | None, name: str) -> dt.date | None:
    if text is None:
        return None
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, detail=f"{name}: expected YYYY-MM-DD or RFC 3339") from None
    if parsed.tzinfo is None:
        raise HTTPException(400, detail=f"{name}: an RFC 3339 time needs an offset")
    return parsed.astimezone(dt.UTC).date()


def _where(station_id: str, start: dt.datetime, end: dt.datetime) -> str:
    start_ns = int(start.timestamp()) * NS
    end_ns = int(end.timestamp()) * NS
    return (
        f"WHERE {quote_identifier(schema.STATION_TAG)} = {quote_string(station_id)} "
        f"AND time >= {time_literal(start_ns)} AND time < {time_literal(end_ns)}"
    )


def fire_weather_statements(station_id: str, first: dt.date, last: dt.date) -> list[InfluxQL]:
    """Return the noon-window statements (one per input) and the 24-h rain statement."""
    noon_where = _where(station_id, noon(first) - NOON_HALF_WINDOW, noon(last) + NOON_HALF_WINDOW)
    statements = [
        InfluxQL(
            f"SELECT mean({quote_identifier(p)}) AS {quote_identifier('mean')}, "
            f"count({quote_identifier(p)}) AS {quote_identifier('count')} "
            f"FROM {quote_identifier(schema.READINGS)} {noon_where} "
            f"GROUP BY time({DURATIONS['1h']}, {_NOON_OFFSET}) fill(none)"
        )
        for p in _NOON_INPUTS
    ]
    rain = quote_identifier("precipitation")
    rain_where = _where(
        station_id,
        noon(first) - dt.timedelta(days=1) + dt.timedelta(seconds=1),
        noon(last) + dt.timedelta(seconds=1),
    )
    statements.append(
        InfluxQL(
            f"SELECT sum({rain}) AS {quote_identifier('sum')}, "
            f"count({rain}) AS {quote_identifier('count')} "
            f"FROM {quote_identifier(schema.READINGS)} {rain_where} "
            f"GROUP BY time({DURATIONS['1d']}, {_RAIN_OFFSET}) fill(none)"
        )
    )
    return statements


def _day_of_ns(ts_ns: int, shift: dt.timedelta) -> dt.date:
    return (dt.datetime.fromtimestamp(ts_ns // NS, dt.UTC) + shift).date()


def _out(day: FireWeatherDay) -> FireWeatherDayOut:
    i = day.inputs
    wind = None if i.wind_speed_ms is None else i.wind_speed_ms * 3.6
    codes = None
    if day.fwi is not None:
        f = day.fwi
        codes = CodesOut(
            ffmc=f.ffmc, dmc=f.dmc, dc=f.dc, isi=f.isi, bui=f.bui, fwi=f.fwi, dsr=f.dsr
        )
    return FireWeatherDayOut(
        day=i.day,
        inputs=FireWeatherInputsOut(
            air_temperature=i.temperature_c,
            relative_humidity=i.relative_humidity,
            wind_speed_kmh=wind,
            rain_24h_mm=i.rain_24h_mm,
        ),
        completeness=CompletenessOut(noon_readings=i.noon_readings, rain_readings=i.rain_readings),
        codes=codes,
        effis_class=day.effis,
        effis_label=EFFIS_LABELS[day.effis] if day.effis is not None else None,
        start=day.fwi.start if day.fwi is not None else None,
        missing_days=day.fwi.missing_days if day.fwi is not None else None,
        missing=day.missing,
    )


_CSV_COLUMNS: Final = (
    "day", "air_temperature", "relative_humidity", "wind_speed_kmh", "rain_24h_mm",
    "noon_readings", "rain_readings", "ffmc", "dmc", "dc", "isi", "bui", "fwi", "dsr",
    "effis_class", "start", "missing_days", "missing",
)  # fmt: skip


def _csv(days: list[FireWeatherDayOut]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for d in days:
        c = d.codes
        codes = ["", "", "", "", "", "", ""] if c is None else [
            c.ffmc, c.dmc, c.dc, c.isi, c.bui, c.fwi, c.dsr
        ]  # fmt: skip
        writer.writerow(
            [
                d.day.isoformat(),
                *(
                    "" if v is None else v
                    for v in (
                        d.inputs.air_temperature,
                        d.inputs.relative_humidity,
                        d.inputs.wind_speed_kmh,
                        d.inputs.rain_24h_mm,
                    )
                ),
                d.completeness.noon_readings,
                d.completeness.rain_readings,
                *codes,
                d.effis_class or "",
                d.start or "",
                "" if d.missing_days is None else d.missing_days,
                d.missing or "",
            ]
        )
    return buffer.getvalue()


@router.get(
    "/v1/stations/{station_id}/fire-weather",
    response_model=FireWeatherOut,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON (default) or CSV"},
        400: {"description": "bad range"},
        404: {"description": "unknown station"},
    },
)
async def fire_weather(
    station: StationDep,
    reader: ReaderDep,
    start: Annotated[
        str | None, Query(max_length=64, description="first day, YYYY-MM-DD (default end - 30 d)")
    ] = None,
    end: Annotated[
        str | None,
        Query(max_length=64, description="day after the last, exclusive (default: tomorrow)"),
    ] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> FireWeatherOut | Response:
    """Return the station's daily FWI System: inputs, completeness, codes, EFFIS class."""
    end_day = _parse_day(end, "end") or (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1))
    start_day = _parse_day(start, "start") or (end_day - dt.timedelta(days=30))
    if end_day <= start_day:
        raise HTTPException(400, detail="end must be after start")
    if (end_day - start_day).days > MAX_DAYS:
        raise HTTPException(400, detail=f"at most {MAX_DAYS} days per request; narrow start/end")
    first = season_start(start_day)
    last = end_day - dt.timedelta(days=1)
    results = await reader.query(fire_weather_statements(station.id, first, last))
    means: dict[dt.date, dict[str, float | None]] = {}
    counts: dict[dt.date, int] = {}
    for parameter, result in zip(_NOON_INPUTS, results[:3], strict=True):
        for series in result.series:
            for row in series.rows():
                ts = row["time"]
                assert isinstance(ts, int)
                window = dt.datetime.fromtimestamp(ts // NS, dt.UTC)
                if window.time() != (noon(first) - NOON_HALF_WINDOW).time():
                    continue  # only the 09:30-10:30 window of each day
                day = (window + NOON_HALF_WINDOW).date()
                mean = row["mean"]
                means.setdefault(day, {})[parameter] = (
                    float(mean) if isinstance(mean, int | float) else None
                )
                count = row["count"]
                counts[day] = max(counts.get(day, 0), int(count) if isinstance(count, int) else 0)
    rain: dict[dt.date, tuple[float | None, int]] = {}
    for series in results[3].series:
        for row in series.rows():
            ts, total, count = row["time"], row["sum"], row["count"]
            assert isinstance(ts, int)
            day = _day_of_ns(ts, dt.timedelta(days=1))
            rain[day] = (
                float(total) if isinstance(total, int | float) else None,
                int(count) if isinstance(count, int) else 0,
            )
    inputs: list[NoonInputs] = []
    day = first
    while day <= last:
        total, count = rain.get(day, (None, 0))
        inputs.append(noon_inputs(day, means.get(day, {}), counts.get(day, 0), total, count))
        day += dt.timedelta(days=1)
    computed = fire_weather_days(inputs, station.lat)
    shown = [_out(d) for d in computed if d.inputs.day >= start_day]
    if format == "csv":
        name = f"{station.id}_fire-weather_{start_day.isoformat()}.csv"
        return Response(
            _csv(shown),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return FireWeatherOut(
        station=station.id,
        latitude=station.lat,
        method=(
            "Canadian FWI System (Van Wagner 1987; cffdrs 1.9.0) from noon standard time, "
            "10:00 UTC: mean of readings 09:30-10:30 UTC, rain summed over the 24 h to 10:00 UTC; "
            "chain from 1 March, restarting from FFMC 85, DMC 6, DC 15 after a missing day"
        ),
        classes=EFFIS_SOURCE,
        official_fire_risk_map=OFFICIAL_MAP,
        days=shown,
    )
