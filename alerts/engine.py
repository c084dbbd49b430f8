"""The alert engine's core: readings in time order in, CAP-ready alert messages out.

Pure and deterministic (no I/O, no clock): ``AlertEngine.process`` takes the readings of a
window ``(cursor, watermark]`` of every station, feeds them to each rule's machines in time
order, then runs the timer up to the watermark (deadlines of quiet periods and silences). The
state (``EngineState``) is a pydantic model the service persists after each window.

Areas: a rule with ``area = "station"`` publishes one episode per station; ``municipality`` or
``network`` publishes one episode per area whose level is the highest level of its stations'
machines, changing when that maximum changes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from alerts.machine import MachineState, Transition, expire, feed
from alerts.rules import Rule
from sensors.alerting import (
    AlertArea,
    AlertMessage,
    AreaKind,
    MsgType,
    Texts,
    episode_id,
    message_id,
)
from sensors.derived import heat_index
from sensors.heat import discomfort_index, utci_in_shade_value
from sensors.registry import Station

_CLEAR_HEADLINE = Texts(el="Λήξη: {event}", en="All clear: {event}")
_CLEAR_DESCRIPTION = Texts(
    el="Οι τιμές στην περιοχή {area} είναι κάτω από το όριο εδώ και {quiet}.",
    en="Values at {area} have stayed below the threshold for {quiet}.",
)
_BACK_DESCRIPTION = Texts(
    el="Ο σταθμός {area} στέλνει ξανά μετρήσεις.", en="Station {area} is reporting again."
)
_CANCEL_HEADLINE = Texts(el="Ακύρωση: {event}", en="Cancelled: {event}")
_CANCEL_DESCRIPTION = Texts(
    el="Ο κανόνας που έδωσε αυτή την ειδοποίηση αποσύρθηκε.",
    en="The rule that raised this alert was withdrawn.",
)
CIRCLE_RADIUS_KM = 2.0  # CAP circle around a station: the neighbourhood its readings describe


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored reading of one station: its time and the values it carries."""

    ts: dt.datetime
    station: str
    values: Mapping[str, float]
    suspect: frozenset[str] = frozenset()  # parameters flagged suspect by QC
    synthetic: bool = False  # a daily index computed by the engine, not a reading


class EngineState(BaseModel):
    """Everything the engine persists: how far it has read, and every machine."""

    model_config = ConfigDict(extra="forbid")

    cursor: dt.datetime | None = None
    machines: dict[str, MachineState] = {}  # "rule|station"
    areas: dict[str, MachineState] = {}  # "rule|area-key": level and episode of an area


def index_value(parameter: str, values: Mapping[str, float]) -> float | None:
    """Return the watched quantity of a reading, computing an index; None when not derivable."""
    if parameter in values:
        return values[parameter]
    t = values.get("air_temperature")
    rh = values.get("relative_humidity")
    if t is None or rh is None:
        return None
    result: float | None
    if parameter == "discomfort_index":
        result = float(discomfort_index(t, rh))
    elif parameter == "heat_index":
        result = float(heat_index(np.array([t]), np.array([rh]))[0])
    elif parameter == "utci_shade":
        wind = values.get("wind_speed")
        result = None if wind is None else utci_in_shade_value(t, rh, wind)
    else:
        return None
    if result is None or not math.isfinite(result):
        return None
    return round(result, 6)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "area"


def _fmt(text: Texts, **values: str) -> Texts:
    return Texts(el=text.el.format_map(_Safe(values)), en=text.en.format_map(_Safe(values)))


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class AlertEngine:
    """Runs the rules over the stations' readings; see the module docstring."""

    def __init__(self, rules: Sequence[Rule], stations: Iterable[Station]) -> None:
        self.rules = list(rules)
        self.stations: dict[str, Station] = {s.id: s for s in stations if not s.revoked}
        self.state = EngineState()
        self._scope: dict[str, list[Station]] = {}  # rule id -> the stations it watches
        self._scope_ids: dict[str, frozenset[str]] = {}

    # --- areas ----------------------------------------------------------------------------
    def _stations_of(self, rule: Rule) -> list[Station]:
        cached = self._scope.get(rule.id)
        if cached is not None:
            return cached
        chosen = [
            s for s in self.stations.values() if rule.stations is None or s.id in rule.stations
        ]
        if rule.parameter is not None:
            needed = set(rule.inputs())
            chosen = [s for s in chosen if needed <= set(s.parameters)]
        self._scope[rule.id] = chosen
        self._scope_ids[rule.id] = frozenset(s.id for s in chosen)
        return chosen

    def _area_key(self, rule: Rule, station: Station) -> str:
        if rule.area == "municipality":
            return "m-" + _slug(station.municipality)
        if rule.area == "network":
            return "network"
        return station.id

    def _area(self, rule: Rule, key: str) -> AlertArea:
        members = [s for s in self._stations_of(rule) if self._area_key(rule, s) == key]
        circles = tuple(f"{s.lat:.4f},{s.lon:.4f} {CIRCLE_RADIUS_KM}" for s in members)
        if rule.area == "station" and members:
            s = members[0]
            name = f"{s.name} ({s.municipality})"
            return AlertArea(
                kind="station", key=key, description=Texts(el=name, en=name), circles=circles
            )
        if rule.area == "municipality" and members:
            m = members[0].municipality
            return AlertArea(
                kind="municipality",
                key=key,
                description=Texts(el=f"Δήμος {m}", en=f"Municipality of {m}"),
                circles=circles,
            )
        return AlertArea(
            kind="network",
            key=key,
            description=Texts(
                el="Δίκτυο Meltemi, Θριάσιο πεδίο", en="Meltemi network, Thriasio plain"
            ),
            circles=circles,
        )

    # --- processing -----------------------------------------------------------------------
    def process(
        self, observations: Sequence[Observation], watermark: dt.datetime
    ) -> list[AlertMessage]:
        """Feed readings after the cursor up to ``watermark``, run the timer; return messages."""
        cursor = self.state.cursor
        todo = sorted(
            (o for o in observations if (cursor is None or o.ts > cursor) and o.ts <= watermark),
            key=lambda o: (o.ts, o.station),
        )
        out: list[AlertMessage] = []
        for obs in todo:
            for rule in self.rules:
                if rule.area != "station":
                    # An area's level is the maximum over its stations: every station's earlier
                    # deadlines must be applied first. A station rule's own deadlines are
                    # applied by feed() (and by the timer below), at the same times.
                    out.extend(self._expire_rule(rule, obs.ts, strict=True))
                self._stations_of(rule)
                if obs.station not in self._scope_ids[rule.id]:
                    continue
                if obs.synthetic and rule.kind != "threshold":
                    continue  # a computed daily value is not a sign of life
                station = self.stations[obs.station]
                machine = self._machine(rule, station.id)
                value = None
                if rule.parameter is not None and (
                    rule.kind == "stuck" or not obs.suspect & set(rule.inputs())
                ):  # a suspect input never fires a threshold; a stuck rule looks at all
                    value = index_value(rule.parameter, obs.values)
                transitions = feed(rule, machine, obs.ts, value)
                out.extend(self._publish(rule, station, transitions))
        for rule in self.rules:
            out.extend(self._expire_rule(rule, watermark, strict=False))
        if cursor is None or watermark > cursor:
            self.state.cursor = watermark
        return out

    def cancel_withdrawn(self, now: dt.datetime) -> list[AlertMessage]:
        """Return a Cancel for every active episode whose rule is no longer configured."""
        known = {rule.id for rule in self.rules}
        out: list[AlertMessage] = []
        for table in (self.state.machines, self.state.areas):
            for key in sorted(table):
                rule_id, _, area_key = key.partition("|")
                machine = table[key]
                if rule_id in known:
                    continue
                if machine.level > 0 and machine.onset is not None and machine.references:
                    out.append(self._cancel(rule_id, area_key, machine, now))
                del table[key]
        return out

    def _cancel(
        self, rule_id: str, key: str, machine: MachineState, now: dt.datetime
    ) -> AlertMessage:
        assert machine.onset is not None
        episode = episode_id(rule_id, key, machine.onset)
        machine.sequence += 1
        event = Texts(el=rule_id, en=rule_id)
        return AlertMessage(
            identifier=message_id(episode, machine.sequence),
            episode=episode,
            sequence=machine.sequence,
            rule=rule_id,
            station=key,
            area=AlertArea(kind=_kind_of_key(key), key=key, description=Texts(el=key, en=key)),
            sent=max(now, machine.sent[-1]) if machine.sent else now,
            msg_type="Cancel",
            active=False,
            level=0,
            level_name="cancelled",
            severity="Minor",
            category="Other",
            event=event,
            headline=_fmt(_CANCEL_HEADLINE, event=rule_id),
            description=_CANCEL_DESCRIPTION,
            parameter="-",
            references=tuple(machine.references),
            onset=machine.onset,
        )

    def _machine(self, rule: Rule, station_id: str) -> MachineState:
        return self.state.machines.setdefault(f"{rule.id}|{station_id}", MachineState())

    def _expire_rule(self, rule: Rule, limit: dt.datetime, strict: bool) -> list[AlertMessage]:
        pending: list[tuple[dt.datetime, str, Transition]] = []
        for station in self._stations_of(rule):
            machine = self.state.machines.get(f"{rule.id}|{station.id}")
            if machine is None:
                continue
            for transition in expire(rule, machine, limit, strict):
                pending.append((transition.ts, station.id, transition))
        out: list[AlertMessage] = []
        for _ts, station_id, transition in sorted(pending, key=lambda p: (p[0], p[1])):
            out.extend(self._publish(rule, self.stations[station_id], [transition]))
        return out

    def _publish(
        self, rule: Rule, station: Station, transitions: Sequence[Transition]
    ) -> list[AlertMessage]:
        out: list[AlertMessage] = []
        for transition in transitions:
            if rule.area == "station":
                machine = self._machine(rule, station.id)
                out.append(self._message(rule, station.id, machine, transition))
                continue
            key = self._area_key(rule, station)
            area = self.state.areas.setdefault(f"{rule.id}|{key}", MachineState())
            members = [s for s in self._stations_of(rule) if self._area_key(rule, s) == key]
            level = max(
                (self.state.machines[f"{rule.id}|{s.id}"].level for s in members
                 if f"{rule.id}|{s.id}" in self.state.machines),
                default=0,
            )  # fmt: skip
            if level != area.level:
                area_transition = Transition(
                    transition.ts, area.level, level, transition.value, transition.threshold
                )
                area.level = level
                out.append(self._message(rule, key, area, area_transition))
        return out

    def _message(
        self, rule: Rule, key: str, machine: MachineState, transition: Transition
    ) -> AlertMessage:
        msg_type: MsgType
        if transition.before == 0:
            machine.onset = transition.ts
            machine.sequence = 0
            machine.references = []
            machine.sent = []
            msg_type = "Alert"
        else:
            machine.sequence += 1
            msg_type = "Update"
        assert machine.onset is not None
        episode = episode_id(rule.id, key, machine.onset)
        area = self._area(rule, key)
        area_name = area.description.en
        value_text = "" if transition.value is None else f"{transition.value:.1f}"
        threshold_text = "" if transition.threshold is None else f"{transition.threshold:g}"
        words = {
            "event": "",
            "area": area_name,
            "value": value_text,
            "threshold": threshold_text,
            "quiet": _duration_text(rule.quiet),
        }
        active = transition.after > 0
        if active:
            level = rule.levels[transition.after - 1]
            headline = _fmt(level.headline, **words)
            description = _fmt(level.description, **words)
            instruction = level.instruction
            severity = level.severity
            level_name = level.name
        else:
            headline = Texts(
                el=_CLEAR_HEADLINE.el.format(event=rule.event.el),
                en=_CLEAR_HEADLINE.en.format(event=rule.event.en),
            )
            clear_text = (
                _BACK_DESCRIPTION if rule.kind in ("silent", "stuck") else _CLEAR_DESCRIPTION
            )
            description = _fmt(clear_text, **words)
            instruction = None
            severity = rule.levels[transition.before - 1].severity
            level_name = "all_clear"
        message = AlertMessage(
            identifier=message_id(episode, machine.sequence),
            episode=episode,
            sequence=machine.sequence,
            rule=rule.id,
            station=key,
            area=area,
            sent=transition.ts,
            msg_type=msg_type,
            all_clear=not active,
            active=active,
            level=transition.after,
            level_name=level_name,
            severity=severity,
            category=rule.category,
            event=rule.event,
            headline=headline,
            description=description,
            instruction=instruction,
            awareness_type=rule.awareness_type,
            parameter=rule.parameter or "readings",
            value=transition.value,
            threshold=transition.threshold,
            references=tuple(machine.references),
            onset=machine.onset,
        )
        machine.references = [*machine.references, message.identifier]
        machine.sent = [*machine.sent, transition.ts]
        if not active:
            machine.onset = None
            machine.sequence = -1
            machine.references = []
            machine.sent = []
        return message


def _kind_of_key(key: str) -> AreaKind:
    """Return the area kind of a machine key (see ``AlertEngine._area_key``)."""
    if key == "network":
        return "network"
    return "municipality" if key.startswith("m-") else "station"


def _duration_text(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
