"""``GET /v1/alerts``, ``/v1/alerts/{id}.cap`` and ``/v1/alerts.atom`` (CONTRACT §6).

The alert engine (``meltemi alerts``) stores every message it publishes in the
``alert_messages`` measurement (sensors/alerting.py); these routes only read them:
- ``/v1/alerts``: episodes (an Alert and its Updates / AllClear / Cancel), active and past,
  filtered by ``status``, ``station`` (the station or area key), ``rule`` and ``since``;
- ``/v1/alerts/{id}.cap``: one message as a CAP 1.2 document (``id`` a message identifier, or
  an episode id for its newest message), with ``references`` to the earlier ones;
- ``/v1/alerts.atom``: an Atom feed of the newest messages, each entry linking to its CAP
  document (OASIS "CAP Feeds" practice), kept well under 900 KB.
None of this is an official warning; every document says so and links the civil protection.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Annotated, Final, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from api.deps import ReaderDep
from api.influx import InfluxReader
from api.influxql import InfluxQL, UnsafeQueryPart, time_literal
from sensors import schema
from sensors.alerting import DOC_FIELD, MESSAGES, RULE_ID_RE, RULE_TAG, AlertMessage, Hazard
from sensors.cap import OFFICIAL_WEB, cap_document, cap_time
from sensors.quoting import influxql_identifier, influxql_string

router = APIRouter(tags=["civil protection"])

NS: Final = 1_000_000_000
HISTORY_DAYS: Final = 400  # messages older than this are not listed (episodes are short)
FEED_ENTRIES: Final = 200  # ~3 KB each: far under the CAP Feeds practice note's 900 KB
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
_KEY_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,80}")
_ID_RE: Final = re.compile(
    r"meltemi\.(?P<rule>[a-z0-9][a-z0-9_-]{0,62})\.(?P<key>[a-z0-9][a-z0-9-]{0,80})"
    r"\.(?P<onset>\d{1,12})(?:\.(?P<seq>\d{1,6}))?"
)


class AlertMessageOut(BaseModel):
    """One message of an episode, as listed."""

    identifier: str
    msg_type: str
    all_clear: bool
    sent: str
    level: int
    level_name: str
    severity: str
    value: float | None
    cap: str


class AlertOut(BaseModel):
    """An episode: its current (or last) state and its messages."""

    id: str
    rule: str
    area: str
    area_kind: str
    station: str
    active: bool
    onset: str
    updated: str
    level: int
    level_name: str
    severity: str
    category: str
    hazard: Hazard  # heat, air, fire, station, other: for texts in every page language
    parameter: str
    event: dict[str, str]
    headline: dict[str, str]
    description: dict[str, str]
    messages: list[AlertMessageOut]


class AlertsOut(BaseModel):
    """The answer of ``/v1/alerts``."""

    note: str
    official_warnings: str
    alerts: list[AlertOut]


def _ident(name: str) -> str:
    return influxql_identifier(name)


def messages_query(*, since_ns: int, rule: str | None = None, key: str | None = None) -> InfluxQL:
    """Return the statement reading stored alert messages (values checked by the caller)."""
    where = [f"time >= {time_literal(since_ns)}"]
    if rule is not None:
        if RULE_ID_RE.fullmatch(rule) is None:
            raise UnsafeQueryPart("not a rule id")
        where.append(f"{_ident(RULE_TAG)} = {influxql_string(rule)}")
    if key is not None:
        if _KEY_RE.fullmatch(key) is None:
            raise UnsafeQueryPart("not a station or area key")
        where.append(f"{_ident(schema.STATION_TAG)} = {influxql_string(key)}")
    return InfluxQL(
        f"SELECT {_ident(DOC_FIELD)} FROM {_ident(MESSAGES)} WHERE {' AND '.join(where)}"
    )


async def read_messages(
    reader: InfluxReader, *, since_ns: int, rule: str | None = None, key: str | None = None
) -> list[AlertMessage]:
    """Return the stored messages, oldest first (a corrupt document is skipped and logged)."""
    (result,) = await reader.query([messages_query(since_ns=since_ns, rule=rule, key=key)])
    out: list[AlertMessage] = []
    for series in result.series:
        for row in series.rows():
            doc = row.get(DOC_FIELD)
            if not isinstance(doc, str):
                continue
            try:
                out.append(AlertMessage.model_validate_json(doc))
            except ValidationError:
                continue  # not the engine's document: never served
    out.sort(key=lambda m: (m.sent, m.sequence, m.identifier))
    return out


def _episodes(messages: list[AlertMessage]) -> dict[str, list[AlertMessage]]:
    episodes: dict[str, list[AlertMessage]] = {}
    for message in messages:
        episodes.setdefault(message.episode, []).append(message)
    for chain in episodes.values():
        chain.sort(key=lambda m: m.sequence)
    return episodes


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _cap_url(request: Request, identifier: str) -> str:
    return f"{_base(request)}/v1/alerts/{identifier}.cap"


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alert_out(request: Request, chain: list[AlertMessage]) -> AlertOut:
    last = chain[-1]
    current = next((m for m in reversed(chain) if m.active), chain[0])
    return AlertOut(
        id=last.episode,
        rule=last.rule,
        area=last.area.description.en,
        area_kind=last.area.kind,
        station=last.station,
        active=last.active,
        onset=_iso(last.onset),
        updated=_iso(last.sent),
        level=last.level,
        level_name=last.level_name,
        severity=current.severity,
        category=last.category,
        hazard=last.hazard,
        parameter=last.parameter,
        event={"el": last.event.el, "en": last.event.en},
        headline={"el": last.headline.el, "en": last.headline.en},
        description={"el": last.description.el, "en": last.description.en},
        messages=[
            AlertMessageOut(
                identifier=m.identifier,
                msg_type=m.msg_type,
                all_clear=m.all_clear,
                sent=_iso(m.sent),
                level=m.level,
                level_name=m.level_name,
                severity=m.severity,
                value=m.value,
                cap=_cap_url(request, m.identifier),
            )
            for m in chain
        ],
    )


def _since_ns(since: str | None) -> int:
    if since is None:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=HISTORY_DAYS)
    else:
        try:
            start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise HTTPException(400, detail="since: expected RFC 3339") from None
        if start.tzinfo is None:
            raise HTTPException(400, detail="since: an RFC 3339 time needs an offset")
    return int(start.timestamp()) * NS


@router.get("/v1/alerts", response_model=AlertsOut)
async def alerts(
    request: Request,
    reader: ReaderDep,
    status: Annotated[Literal["active", "ended", "all"], Query()] = "all",
    station: Annotated[str | None, Query(max_length=90, description="station or area key")] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=64, description="RFC 3339")] = None,
) -> AlertsOut:
    """Return alert episodes, newest first: ``status`` active, ended or all."""
    if station is not None and _KEY_RE.fullmatch(station) is None:
        raise HTTPException(400, detail="station: not a station or area key")
    if rule is not None and RULE_ID_RE.fullmatch(rule) is None:
        raise HTTPException(400, detail="rule: not a rule id")
    messages = await read_messages(reader, since_ns=_since_ns(since), rule=rule, key=station)
    chains = sorted(_episodes(messages).values(), key=lambda c: c[-1].sent, reverse=True)
    if status != "all":
        chains = [c for c in chains if c[-1].active == (status == "active")]
    return AlertsOut(
        note="Computed from Meltemi's stations by its alert rules; not an official warning.",
        official_warnings=OFFICIAL_WEB,
        alerts=[_alert_out(request, chain) for chain in chains],
    )


@router.get(
    "/v1/alerts/{alert_id}.cap",
    response_class=Response,
    responses={
        200: {"content": {"application/cap+xml": {}}, "description": "a CAP 1.2 document"},
        404: {"description": "unknown alert"},
    },
)
async def alert_cap(request: Request, reader: ReaderDep, alert_id: str) -> Response:
    """Return one message (or an episode's newest) as a CAP 1.2 document."""
    match = _ID_RE.fullmatch(alert_id) if len(alert_id) <= 200 else None
    if match is None:
        raise HTTPException(404, detail="unknown alert; see /v1/alerts")
    onset_ns = int(match["onset"]) * NS
    messages = await read_messages(reader, since_ns=onset_ns, rule=match["rule"], key=match["key"])
    episode = f"meltemi.{match['rule']}.{match['key']}.{match['onset']}"
    chain = _episodes(messages).get(episode, [])
    if match["seq"] is not None:
        index = next((k for k, m in enumerate(chain) if m.identifier == alert_id), None)
    else:
        index = len(chain) - 1 if chain else None
    if index is None:
        raise HTTPException(404, detail="unknown alert; see /v1/alerts")
    settings = request.app.state.settings
    body = cap_document(chain[index], chain[:index], settings.alerts_sender, _base(request) + "/")
    return Response(body, media_type="application/cap+xml")


@router.get(
    "/v1/alerts.atom",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}, "description": "Atom 1.0"}},
)
async def alerts_atom(request: Request, reader: ReaderDep) -> Response:
    """Return an Atom feed of the newest alert messages, each linking to its CAP document."""
    messages = await read_messages(reader, since_ns=_since_ns(None))
    newest = sorted(messages, key=lambda m: (m.sent, m.sequence), reverse=True)[:FEED_ENTRIES]
    # Unqualified names under a root declaring Atom as its default namespace: no global
    # ElementTree registration (which once turned CAP's default namespace into "ns0:").
    feed = ET.Element("feed", xmlns=ATOM_NS)
    ET.SubElement(feed, "id").text = f"{_base(request)}/v1/alerts.atom"
    ET.SubElement(feed, "title").text = "Meltemi alerts (not official warnings)"
    updated = newest[0].sent if newest else dt.datetime.now(dt.UTC)  # RFC 4287: required
    ET.SubElement(feed, "updated").text = cap_time(updated)
    author = ET.SubElement(feed, "author")
    ET.SubElement(author, "name").text = "Meltemi station network"
    ET.SubElement(feed, "link", rel="self", href=f"{_base(request)}/v1/alerts.atom")
    ET.SubElement(feed, "link", rel="related", href=OFFICIAL_WEB)
    for m in newest:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = f"urn:meltemi:alert:{m.identifier}"
        ET.SubElement(entry, "title").text = f"{m.msg_type}: {m.headline.en}"
        ET.SubElement(entry, "updated").text = cap_time(m.sent)
        ET.SubElement(entry, "published").text = cap_time(m.sent)
        ET.SubElement(entry, "summary").text = f"{m.headline.el} / {m.headline.en}"
        ET.SubElement(
            entry,
            "link",
            rel="alternate",
            type="application/cap+xml",
            href=_cap_url(request, m.identifier),
        )
        ET.SubElement(entry, "category", term=m.severity)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/atom+xml")
