"""SensorThings Observations (and first-seen times) read from InfluxDB, for api.sta's model.

Observations are read per Datastream, oldest first, with ``LIMIT``/``OFFSET`` in InfluxDB; a
collection over several Datastreams is walked Datastream by Datastream, up to
``STATEMENTS_PER_REQUEST`` statements per InfluxDB request, and its next page starts from a
``$skiptoken`` (Datastream index and offset) so that no page re-counts the ones before it.
A ``$skip`` over several Datastreams, and ``$count``, use one ``count(*)`` per station.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from api.influx import Cell, InfluxReader
from api.influxql import InfluxQL, quote_identifier, quote_string, time_literal
from api.sta import (
    NS,
    OBS_SHIFT,
    Datastream,
    Model,
    Observation,
    ObservationSet,
    Options,
    Page,
    TimeRange,
)
from sensors import schema

STATEMENTS_PER_REQUEST: Final = 20  # Datastreams read in one InfluxDB request when walking many


def _observation_query(
    ds: Datastream, time: TimeRange, limit: int, offset: int, one_second: int | None = None
) -> InfluxQL:
    p = ds.parameter.id
    columns = ", ".join(
        quote_identifier(name) for name in (p, schema.qc_field(p), schema.check_field(p))
    )
    conditions = [f"{quote_identifier(schema.STATION_TAG)} = {quote_string(ds.station.id)}"]
    start, end = time.start_ns, time.end_ns
    if one_second is not None:
        start, end = one_second * NS, (one_second + 1) * NS
    if start is not None:
        conditions.append(f"time >= {time_literal(start)}")
    if end is not None:
        conditions.append(f"time < {time_literal(end)}")
    return InfluxQL(
        f"SELECT {columns} FROM {quote_identifier(schema.READINGS)} "
        f"WHERE {' AND '.join(conditions)} ORDER BY time ASC "
        f"LIMIT {int(limit)} OFFSET {int(offset)}"
    )


def _observations(ds: Datastream, rows: list[dict[str, Cell]]) -> list[Observation]:
    p = ds.parameter.id
    found = []
    for row in rows:
        ts, value = row.get("time"), row.get(p)
        if not isinstance(ts, int) or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        qc, check = row.get(schema.qc_field(p)), row.get(schema.check_field(p))
        flag = qc if isinstance(qc, str) else ""
        failed = check if isinstance(check, str) and flag == schema.QcFlag.SUSPECT else ""
        found.append(Observation(ds, ts, float(value), flag, failed))
    return found


async def read_observation(reader: InfluxReader, model: Model, obs_id: int) -> Observation | None:
    """Return the Observation of an id, or None."""
    ds = model.datastream(obs_id // OBS_SHIFT)
    if ds is None:
        return None
    (result,) = await reader.query(
        [_observation_query(ds, TimeRange(), 1, 0, one_second=obs_id % OBS_SHIFT)]
    )
    rows = [row for series in result.series for row in series.rows()]
    found = _observations(ds, rows)
    return found[0] if found else None


async def _counts(
    reader: InfluxReader, datastreams: Sequence[Datastream], time: TimeRange
) -> list[int]:
    """Return the number of Observations of each Datastream (one statement per station)."""
    stations = list(dict.fromkeys(ds.station.id for ds in datastreams))
    statements = []
    for station in stations:
        conditions = [f"{quote_identifier(schema.STATION_TAG)} = {quote_string(station)}"]
        if time.start_ns is not None:
            conditions.append(f"time >= {time_literal(time.start_ns)}")
        if time.end_ns is not None:
            conditions.append(f"time < {time_literal(time.end_ns)}")
        statements.append(
            InfluxQL(
                f"SELECT count(*) FROM {quote_identifier(schema.READINGS)} "
                f"WHERE {' AND '.join(conditions)}"
            )
        )
    counts: dict[tuple[str, str], int] = {}
    for start in range(0, len(statements), STATEMENTS_PER_REQUEST):
        results = await reader.query(statements[start : start + STATEMENTS_PER_REQUEST])
        for station, result in zip(stations[start:], results, strict=False):
            for series in result.series:
                for row in series.rows():
                    for column, value in row.items():
                        if column.startswith("count_") and isinstance(value, int):
                            counts[(station, column[6:])] = value
    return [counts.get((ds.station.id, ds.parameter.id), 0) for ds in datastreams]


async def read_observations(
    reader: InfluxReader, observations: ObservationSet, options: Options
) -> Page:
    """Return one page of an ObservationSet (and its count when asked)."""
    datastreams = observations.datastreams
    count = sum(await _counts(reader, datastreams, options.time)) if options.count else None
    if options.skiptoken is not None:
        index, offset = options.skiptoken
    elif options.skip and len(datastreams) > 1:
        index, offset = len(datastreams), 0
        remaining = options.skip
        for i, n in enumerate(await _counts(reader, datastreams, options.time)):
            if remaining < n:
                index, offset = i, remaining
                break
            remaining -= n
    else:
        index, offset = 0, options.skip
    members: list[Observation] = []
    next_at: tuple[int, int] | None = None
    while index < len(datastreams) and next_at is None:
        batch = datastreams[index : index + STATEMENTS_PER_REQUEST]
        need = options.top - len(members) + 1  # one more tells whether a next page exists
        statements = [
            _observation_query(ds, options.time, need, offset if i == 0 else 0)
            for i, ds in enumerate(batch)
        ]
        results = await reader.query(statements)
        for i, (ds, result) in enumerate(zip(batch, results, strict=True)):
            got = _observations(ds, [row for series in result.series for row in series.rows()])
            start = offset if i == 0 else 0
            room = options.top - len(members)
            if len(got) > room:  # the page ends inside this Datastream
                members.extend(got[:room])
                next_at = (index + i, start + room)
                break
            members.extend(got)
            if len(members) == options.top:  # full: the next page starts at the next one
                next_at = (index + i + 1, 0)
                break
        index += len(batch)
        offset = 0
    page = Page(members=members, count=count)
    if next_at is not None and next_at[0] < len(datastreams):
        ds_index, ds_offset = next_at
        if len(datastreams) == 1:
            page.next_params = {"$skip": str(ds_offset)}
        else:
            page.next_params = {"$skiptoken": f"{ds_index}.{ds_offset}"}
    return page


async def read_first_seen(reader: InfluxReader, model: Model) -> None:
    """Fill ``model.first_seen``: each station's oldest stored reading time."""
    st = quote_identifier(schema.STATION_TAG)
    (result,) = await reader.query(
        [
            InfluxQL(
                f"SELECT * FROM {quote_identifier(schema.READINGS)} "
                f"GROUP BY {st} ORDER BY time ASC LIMIT 1"
            )
        ]
    )
    for series in result.series:
        rows = series.rows()
        if rows and isinstance(ts := rows[0].get("time"), int):
            model.first_seen[series.tags.get(schema.STATION_TAG, "")] = ts
