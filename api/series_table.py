"""Series answers from query results: windows of stored and derived parameters, raw readings,
and their JSON and CSV renderings (pure; the route runs the numpy parts in a worker thread)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from api.aggregate import NS, AggValue, FloatArray, IntArray, aggregate_windows, vector_mean_deg
from api.influx import Cell, StatementResult
from api.models import AggPoint, RawPoint
from api.series import DERIVED_MAX_READINGS, INTERVAL_NS, MAX_POINTS, SeriesPlan, SeriesRequestError
from sensors import schema
from sensors.airquality import DAILY_MEAN_MIN_HOURS
from sensors.catalog import AGGREGATIONS, CATALOG, Aggregation
from sensors.derived import DERIVED, compute_derived, derive
from sensors.models import format_ts
from sensors.schema import QcFlag

Windows = dict[int, dict[Aggregation, AggValue]]
BoolArray = npt.NDArray[np.bool_]


def _rows(result: StatementResult) -> tuple[list[str], list[list[Cell]]]:
    """Return the columns and rows of a single-series result (no series: no rows)."""
    if not result.series:
        return [], []
    series = result.series[0]
    return series.columns, series.values


def _number(value: Cell) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def stored_windows(parameter: str, result: StatementResult) -> Windows:
    """Return one stored parameter's windows from its ``api.queries`` aggregate statement."""
    columns, rows = _rows(result)
    if not rows:
        return {}
    index = {name: k for k, name in enumerate(columns)}
    time_at = index["time"]
    vector = CATALOG[parameter].circular and "s" in index
    plain = [
        (agg, index[agg]) for agg in AGGREGATIONS if agg in index and not (vector and agg == "mean")
    ]
    windows: Windows = {}
    for row in rows:
        ts = row[time_at]
        if not isinstance(ts, int):
            continue
        out: dict[Aggregation, AggValue] = {}
        if vector:
            out["mean"] = vector_mean_deg(_number(row[index["s"]]), _number(row[index["c"]]))
        for agg, at in plain:
            value = _number(row[at])
            out[agg] = int(value) if agg == "count" and value is not None else value
        windows[ts] = out
    return windows


def format_times(ts_ns: Sequence[int]) -> list[str]:
    """Return RFC 3339 UTC labels like sensors.models.format_ts, vectorised for whole seconds."""
    stamps = np.asarray(ts_ns, dtype=np.int64)
    if stamps.size and not np.any(stamps % NS):
        seconds = (stamps // NS).astype("datetime64[s]")
        return [text + "Z" for text in np.datetime_as_string(seconds, unit="s").tolist()]
    return [format_ts(int(ts)) for ts in stamps.tolist()]


class ReadingArrays:
    """Raw readings as arrays: timestamps, and per parameter its values and QC flags."""

    def __init__(self, result: StatementResult, parameters: Sequence[str]) -> None:
        columns, rows = _rows(result)
        self.size = len(rows)
        transposed = dict(zip(columns, zip(*rows, strict=True), strict=True)) if rows else {}
        self.ts: IntArray = np.asarray(transposed.get("time", ()), dtype=np.int64)
        self.values: dict[str, FloatArray] = {}
        self.good: dict[str, BoolArray] = {}
        # The failed check, meaningful only where the flag says suspect (ingest.points).
        self.checks: dict[str, list[Cell]] = {}

        for parameter in parameters:
            # Float fields come as JSON numbers or null: numpy turns null (None) into NaN.
            raw = transposed.get(parameter, (None,) * self.size)
            self.values[parameter] = np.asarray(raw, dtype=np.float64)
            flags = np.asarray(
                transposed.get(schema.qc_field(parameter), ("",) * self.size), dtype=object
            )
            self.good[parameter] = np.asarray(flags == QcFlag.GOOD.value, dtype=np.bool_)
            self.checks[parameter] = list(
                transposed.get(schema.check_field(parameter), ("",) * self.size)
            )

    def usable(self, parameter: str, include_suspect: bool) -> FloatArray:
        """Return the parameter's values, NaN where absent (or suspect, unless included)."""
        values = self.values[parameter]
        if include_suspect:
            return values
        masked: FloatArray = np.where(self.good[parameter], values, np.nan)
        return masked


def derived_windows(plan: SeriesPlan, result: StatementResult) -> dict[str, Windows]:
    """Return each derived parameter's windows, aggregated from its per-reading values."""
    readings = ReadingArrays(result, plan.derived_inputs)
    if readings.size > DERIVED_MAX_READINGS:
        raise SeriesRequestError(
            f"{', '.join(plan.derived)} are computed from every reading, and this range holds "
            f"more than {DERIVED_MAX_READINGS:,}: narrow start/end, or ask for stored "
            "parameters only"
        )
    inputs = {p: readings.usable(p, plan.include_suspect) for p in plan.derived_inputs}
    hourly = [p for p in plan.derived if DERIVED[p].hourly]
    if hourly and INTERVAL_NS[plan.interval] < HOUR_NS:
        raise SeriesRequestError(_hourly_only(hourly))
    daily = [p for p in plan.derived if DERIVED[p].daily]
    if daily and plan.interval != "1d":
        raise SeriesRequestError(_daily_only(daily))
    per_reading = [p for p in plan.derived if p not in hourly and p not in daily]
    computed = derive(inputs, readings.good, per_reading)
    out: dict[str, Windows] = {}
    for p in plan.derived:
        if p in hourly:
            ts, values = _hourly_levels(plan, p, inputs[DERIVED[p].inputs[0]], readings.ts)
        elif p in daily:
            ts, values = _daily_ratios(plan, p, inputs[DERIVED[p].inputs[0]], readings.ts)
        else:
            ts, values = readings.ts, computed[p].values
        out[p] = aggregate_windows(
            ts,
            values,
            plan.aggs[p],
            step_ns=INTERVAL_NS[plan.interval],
            zone=plan.window_tz,
            start_ns=plan.start_ns,
            end_ns=plan.end_ns,
        )
    return out


HOUR_NS = 3600 * NS


def _hourly_only(parameters: Sequence[str]) -> str:
    return (
        f"{', '.join(parameters)}: the European Air Quality Index is defined on hourly means; "
        "choose an interval of 1h or longer"
    )


def _daily_only(parameters: Sequence[str]) -> str:
    return (
        f"{', '.join(parameters)}: the WHO 2021 guideline is compared with daily means; "
        "choose interval 1d"
    )


def _hourly_means(
    plan: SeriesPlan, concentration: FloatArray, ts: IntArray
) -> tuple[IntArray, FloatArray]:
    """Return the hour starts (UTC) and the mean concentration of each hour with readings."""
    means = aggregate_windows(
        ts,
        concentration,
        ("mean",),
        step_ns=HOUR_NS,
        zone=None,
        start_ns=plan.start_ns,
        end_ns=plan.end_ns,
    )
    hours = np.asarray(sorted(means), dtype=np.int64)
    values = np.asarray([means[h]["mean"] for h in hours.tolist()], dtype=np.float64)
    return hours, values


def _daily_ratios(
    plan: SeriesPlan, parameter: str, concentration: FloatArray, ts: IntArray
) -> tuple[IntArray, FloatArray]:
    """Return each day's start and its mean of hourly means over the WHO 2021 24-hour guideline,
    for days with at least DAILY_MEAN_MIN_HOURS hourly means (Directive 2008/50/EC: 75 %)."""
    hours, hourly = _hourly_means(plan, concentration, ts)
    days = aggregate_windows(
        hours,
        hourly,
        ("mean", "count"),
        step_ns=INTERVAL_NS["1d"],
        zone=plan.window_tz,
        start_ns=plan.start_ns,
        end_ns=plan.end_ns,
    )
    starts = [d for d in sorted(days) if int(days[d]["count"] or 0) >= DAILY_MEAN_MIN_HOURS]
    means = np.asarray([days[d]["mean"] for d in starts], dtype=np.float64)
    ratios = compute_derived({DERIVED[parameter].inputs[0]: means})[parameter]
    return np.asarray(starts, dtype=np.int64), ratios


def _hourly_levels(
    plan: SeriesPlan, parameter: str, concentration: FloatArray, ts: IntArray
) -> tuple[IntArray, FloatArray]:
    """Return the hour starts (UTC) and the level of each hour's mean concentration (EEA: the
    index is defined on hourly means, so the level is never a mean of per-reading levels)."""
    hours, hourly_means = _hourly_means(plan, concentration, ts)
    levels: FloatArray = np.asarray(
        compute_derived({DERIVED[parameter].inputs[0]: hourly_means})[parameter],
        dtype=np.float64,
    )
    return hours, levels


def aggregate_points(plan: SeriesPlan, windows: dict[str, Windows]) -> list[AggPoint]:
    """Return the points of an aggregated series, oldest first; empty windows are left out."""
    table: dict[int, dict[str, dict[str, float | int | None]]] = {}
    for parameter in plan.parameters:
        for ts, aggs in windows.get(parameter, {}).items():
            wanted: dict[str, float | int | None] = {
                agg: aggs.get(agg) for agg in plan.aggs[parameter]
            }
            table.setdefault(ts, {})[parameter] = wanted
    order = sorted(table)
    return [
        {"time": label, "values": table[ts]}
        for ts, label in zip(order, format_times(order), strict=True)
    ]


def raw_points(plan: SeriesPlan, result: StatementResult) -> list[RawPoint]:
    """Return the readings of a raw series with their QC flags and derived values."""
    hourly = [p for p in plan.derived if DERIVED[p].hourly]
    if hourly:
        raise SeriesRequestError(_hourly_only(hourly))
    daily = [p for p in plan.derived if DERIVED[p].daily]
    if daily:
        raise SeriesRequestError(_daily_only(daily))
    wanted = tuple(dict.fromkeys((*plan.stored, *plan.derived_inputs)))
    readings = ReadingArrays(result, wanted)
    if readings.size > MAX_POINTS:  # the LIMIT backstop of the 1 reading/s bound
        raise SeriesRequestError(
            f"this range holds more than {MAX_POINTS:,} readings: narrow start/end, or choose "
            "an aggregated interval such as 1m"
        )
    inputs = {p: readings.usable(p, plan.include_suspect) for p in plan.derived_inputs}
    computed = derive(inputs, readings.good, plan.derived)
    points: list[RawPoint] = []
    ts_list = readings.ts.tolist()
    labels = format_times(ts_list)
    stored = [
        (p, readings.usable(p, plan.include_suspect).tolist(), readings.good[p].tolist())
        for p in plan.stored
    ]
    derived = [(p, computed[p].rounded().tolist(), computed[p].good.tolist()) for p in plan.derived]
    for k in range(len(ts_list)):
        values: dict[str, float] = {}
        qc: dict[str, str] = {}
        checks: dict[str, str] = {}
        for parameter, column, good in (*stored, *derived):
            value = column[k]
            if value == value:  # not NaN
                values[parameter] = value
                qc[parameter] = QcFlag.GOOD.value if good[k] else QcFlag.SUSPECT.value
                failed = readings.checks.get(parameter, ())
                check = failed[k] if k < len(failed) else None
                if not good[k] and isinstance(check, str) and check:
                    checks[parameter] = check
        if values:
            point: RawPoint = {"time": labels[k], "values": values, "qc": qc}
            if checks:
                point["checks"] = checks
            points.append(point)
    return points


def _cell(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def aggregate_csv(plan: SeriesPlan, points: list[AggPoint]) -> str:
    """Return CSV: ``time``, then a ``parameter_agg`` column per parameter and aggregation."""
    columns = [(p, agg) for p in plan.parameters for agg in plan.aggs[p]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["time", *(f"{p}_{agg}" for p, agg in columns)])
    for point in points:
        values = point["values"]
        writer.writerow([point["time"], *(_cell(values.get(p, {}).get(agg)) for p, agg in columns)])
    return buffer.getvalue()


def raw_csv(plan: SeriesPlan, points: list[RawPoint]) -> str:
    """Return CSV: ``time``, then a column per parameter (and ``parameter_qc`` columns when
    suspect values are included, so that they stay distinguishable)."""
    header = ["time", *plan.parameters]
    if plan.include_suspect:
        header += [schema.qc_field(p) for p in plan.parameters]
        header += [schema.check_field(p) for p in plan.parameters]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for point in points:
        values, qc = point["values"], point["qc"]
        row = [point["time"], *(_cell(values.get(p)) for p in plan.parameters)]
        if plan.include_suspect:
            row += [qc.get(p, "") for p in plan.parameters]
            checks = point.get("checks", {})
            row += [checks.get(p, "") for p in plan.parameters]

        writer.writerow(row)
    return buffer.getvalue()
