"""The alert engine's InfluxDB adapter: the v1 API (``/query`` InfluxQL, ``/write`` lines).

Reads the stored readings of a window (``readings``, CONTRACT §3) and writes the engine's
messages (``alert_messages``, sensors/alerting.py) with second precision, keyed by rule, station
or area, and transition time: writing the same message twice overwrites one point. Credentials
travel in headers only (Basic for 1.x, ``Token`` for 2.x/3.x), as api/influx.py does. Errors
are translated once, here (alerts/errors.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Final

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from alerts.engine import Observation
from alerts.errors import StoreRejected, StoreUnavailable
from sensors import schema
from sensors.alerting import DOC_FIELD, MESSAGES, RULE_TAG, AlertMessage
from sensors.fire_weather import NOON_HALF_WINDOW, NoonInputs, noon, noon_inputs
from sensors.quoting import influxql_identifier
from sensors.settings import Settings

logger = logging.getLogger(__name__)

NS: Final = 1_000_000_000
_DETAIL_MAX: Final = 300
_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})
_FWI_INPUTS: Final = ("air_temperature", "relative_humidity", "wind_speed", "precipitation")
Cell = float | int | str | bool | None


class _Series(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = ""
    tags: dict[str, str] = {}
    columns: list[str]
    values: list[list[Cell]] = []


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)

    series: list[_Series] = []
    error: str | None = None
    partial: bool = False


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[_Result] = []
    error: str | None = None


def _ns(ts: dt.datetime) -> int:
    return int(ts.timestamp()) * NS + ts.microsecond * 1000


def message_line(message: AlertMessage) -> str:
    """Return one message as a line of ``alert_messages`` (second precision).

    Tag values are a rule id and a station id or area key, both limited to ``[a-z0-9_-]``; the
    document is JSON with no raw newline, escaped as a line-protocol string field.
    """
    doc = message.model_dump_json()
    return (
        f"{MESSAGES},{RULE_TAG}={message.rule},{schema.STATION_TAG}={message.station} "
        f'{DOC_FIELD}="{doc.translate(_STRING)}",level={message.level}i,'
        f'msg_type="{message.msg_type}" {int(message.sent.timestamp())}'
    )


class AlertStore:
    """Reads readings and writes messages through one ``httpx.Client``."""

    def __init__(self, settings: Settings) -> None:
        headers = {"Accept": "application/json"}
        auth: httpx.Auth | None = None
        if settings.influx_token is not None:
            headers["Authorization"] = "Token " + settings.influx_token.get_secret_value()
        elif settings.influx_username is not None:
            password = (
                settings.influx_password.get_secret_value() if settings.influx_password else ""
            )
            auth = httpx.BasicAuth(settings.influx_username, password)
        self.database = settings.influx_db
        self.client = httpx.Client(
            base_url=settings.influx_url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(settings.influx_timeout_s),
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]  # httpx's keyword types
        except httpx.TimeoutException as exc:
            raise StoreUnavailable("InfluxDB did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB is unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise StoreUnavailable(f"InfluxDB answered {response.status_code}")
        if response.status_code >= 400:
            raise StoreRejected(
                f"InfluxDB refused {path} ({response.status_code}): {response.text[:_DETAIL_MAX]}"
            )
        return response

    def _query(self, text: str) -> list[_Series]:
        response = self._request(
            "GET", "/query", params={"db": self.database, "q": text, "epoch": "ns"}
        )
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise StoreRejected("InfluxDB answered with an unreadable body") from exc
        if answer.error is not None:
            raise StoreRejected(f"InfluxDB: {answer.error[:_DETAIL_MAX]}")
        series: list[_Series] = []
        for result in answer.results:
            if result.error is not None:
                raise StoreRejected(f"InfluxDB: {result.error[:_DETAIL_MAX]}")
            if result.partial:
                raise StoreRejected("InfluxDB cut the answer short (partial)")
            series.extend(result.series)
        return series

    def _readings(
        self, parameters: Sequence[str], start_ns: int, end_ns: int, *, closed_start: bool
    ) -> list[tuple[int, str, dict[str, float], frozenset[str]]]:
        columns: list[str] = []
        for p in parameters:
            columns += [influxql_identifier(p), influxql_identifier(schema.qc_field(p))]
        low = ">=" if closed_start else ">"
        text = (
            f"SELECT {', '.join(columns)} FROM {influxql_identifier(schema.READINGS)} "
            f"WHERE time {low} {int(start_ns)} AND time <= {int(end_ns)} "
            f"GROUP BY {influxql_identifier(schema.STATION_TAG)}"
        )
        rows: list[tuple[int, str, dict[str, float], frozenset[str]]] = []
        for series in self._query(text):
            station = series.tags.get(schema.STATION_TAG, "")
            for raw in series.values:
                row = dict(zip(series.columns, raw, strict=True))
                ts = row.get("time")
                if not isinstance(ts, int):
                    continue
                values: dict[str, float] = {}
                suspect: set[str] = set()
                for p in parameters:
                    value = row.get(p)
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        continue
                    if math.isfinite(value):
                        values[p] = float(value)
                        if row.get(schema.qc_field(p)) != schema.QcFlag.GOOD:
                            suspect.add(p)
                if values:
                    rows.append((ts, station, values, frozenset(suspect)))
        return rows

    def observations(
        self, parameters: Iterable[str], start: dt.datetime, end: dt.datetime
    ) -> list[Observation]:
        """Return every station's readings with ``start < ts <= end`` (the watched fields)."""
        wanted = sorted(set(parameters))
        rows = self._readings(wanted, _ns(start), _ns(end), closed_start=False)
        return [
            Observation(
                ts=dt.datetime.fromtimestamp(ts / NS, dt.UTC),
                station=station,
                values=values,
                suspect=suspect,
            )
            for ts, station, values, suspect in rows
        ]

    def noon_inputs(self, day: dt.date) -> dict[str, NoonInputs]:
        """Return each station's FWI inputs for ``day`` (sensors/fire_weather.py definitions)."""
        start = noon(day) - dt.timedelta(days=1)
        end = noon(day) + NOON_HALF_WINDOW
        rows = self._readings(_FWI_INPUTS, _ns(start), _ns(end), closed_start=False)
        by_station: dict[str, list[tuple[int, dict[str, float]]]] = {}
        for ts, station, values, _suspect in rows:
            by_station.setdefault(station, []).append((ts, values))
        noon_low = _ns(noon(day) - NOON_HALF_WINDOW)
        noon_high = _ns(end)
        rain_high = _ns(noon(day))
        out: dict[str, NoonInputs] = {}
        for station, readings in by_station.items():
            sums: dict[str, list[float]] = {}
            count = 0
            rain_total = 0.0
            rain_count = 0
            for ts, values in readings:
                if noon_low <= ts < noon_high:
                    count += 1
                    for p in _FWI_INPUTS[:3]:
                        if p in values:
                            sums.setdefault(p, []).append(values[p])
                if ts <= rain_high and "precipitation" in values:
                    rain_total += values["precipitation"]
                    rain_count += 1
            means: dict[str, float | None] = {p: (sum(v) / len(v)) for p, v in sums.items() if v}
            out[station] = noon_inputs(day, means, count, rain_total, rain_count)
        return out

    def write_messages(self, messages: Sequence[AlertMessage]) -> None:
        """Store messages (idempotent: the same message overwrites the same point)."""
        if not messages:
            return
        body = "\n".join(message_line(m) for m in messages).encode()
        self._request(
            "POST", "/write", params={"db": self.database, "precision": "s"}, content=body
        )
