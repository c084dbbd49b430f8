"""``meltemi alerts``: the alert engine on a timer, with its state persisted.

Every ``alerts_interval_s`` the engine reads the readings of the window (cursor, now - lag],
computes each station's daily FWI once 10:30 UTC has passed, runs the rules (alerts/engine.py),
then, in this order: stores the messages in InfluxDB, publishes them on MQTT
(``meltemi/alerts/{station or area}``, QoS 1), and saves its state (atomically: a temporary file,
fsync, rename). A crash anywhere before the save replays the same window on restart, which
gives the same messages at the same times with the same identifiers, overwriting the same
points: nothing is re-fired with a new identity and nothing is forgotten.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alerts.engine import AlertEngine, EngineState, Observation
from alerts.errors import AlertsError
from alerts.rules import Rule, load_rules
from alerts.store import AlertStore
from sensors.alerting import AlertMessage, alerts_topic
from sensors.fire_weather import NOON_HALF_WINDOW, fire_weather_days, noon
from sensors.fwi import FwiState
from sensors.registry import open_registry
from sensors.settings import Settings

logger = logging.getLogger(__name__)

MAX_WINDOW: Final = dt.timedelta(hours=12)  # catch up in steps of at most this much
MQTT_CLIENT_ID: Final = "meltemi-alerts"
PUBACK_WAIT_S: Final = 5.0  # per step: how long the engine waits for the broker's PUBACKs
_CLOCK_RE: Final = re.compile(
    r"(?P<start>[^@]+)@(?P<anchor>\d+(?:\.\d+)?)\*(?P<speed>\d+(?:\.\d+)?)"
)


class Clock:
    """The engine's notion of now: the wall clock, or a replay clock (``alerts_clock``)."""

    def __init__(
        self, start: dt.datetime | None = None, anchor: float = 0.0, speed: float = 1.0
    ) -> None:
        self.start = start
        self.anchor = anchor
        self.speed = speed

    def now(self) -> dt.datetime:
        """Return the current time (UTC)."""
        wall = dt.datetime.now(dt.UTC)
        if self.start is None:
            return wall
        elapsed = (wall.timestamp() - self.anchor) * self.speed
        return self.start + dt.timedelta(seconds=max(0.0, elapsed))


def parse_clock(spec: str | None) -> Clock:
    """Return the clock of ``MELTEMI_ALERTS_CLOCK`` ("START@ANCHOR*SPEED"), or the wall clock."""
    if spec is None:
        return Clock()
    match = _CLOCK_RE.fullmatch(spec.strip())
    if match is None:
        raise AlertsError("MELTEMI_ALERTS_CLOCK: expected START@ANCHOR*SPEED")
    start = dt.datetime.fromisoformat(match["start"].replace("Z", "+00:00"))
    if start.tzinfo is None:
        raise AlertsError("MELTEMI_ALERTS_CLOCK: START needs an offset")
    return Clock(start, float(match["anchor"]), float(match["speed"]))


@dataclass
class StateFile:
    """The engine's persisted state: JSON, replaced atomically."""

    path: Path

    def load(self) -> tuple[EngineState, dict[str, FwiState]]:
        """Return the saved state (a fresh one when there is no file)."""
        if not self.path.exists():
            return EngineState(), {}
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        fwi = {k: FwiState.from_record(v) for k, v in raw.pop("fwi", {}).items()}
        return EngineState.model_validate(raw), fwi

    def save(self, state: EngineState, fwi: dict[str, FwiState]) -> None:
        """Write the state to a temporary file, fsync it, and rename it over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = state.model_dump(mode="json")
        data["fwi"] = {k: v.to_record() for k, v in fwi.items()}
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class Publisher:
    """Publishes messages on MQTT (QoS 1); the stored message stays the reference."""

    def __init__(self, settings: Settings) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=MQTT_CLIENT_ID, protocol=mqtt.MQTTv5
        )
        if settings.alerts_mqtt_username is not None:
            password = settings.alerts_mqtt_password
            self.client.username_pw_set(
                settings.alerts_mqtt_username, password.get_secret_value() if password else None
            )
        if settings.mqtt_tls:
            self.client.tls_set(
                ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            )
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_args: self.connected.clear()
        self.client.connect_async(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("alert publisher: the broker refused the connection: %s", reason_code)
            return
        self.connected.set()
        logger.info("alert publisher connected")

    def publish(self, messages: Sequence[AlertMessage]) -> bool:
        """Publish each message (QoS 1) and wait for the broker's PUBACKs, up to a deadline.

        Return True when every message was acknowledged. The state is saved after this, so a
        crash before the acknowledgements replays (re-publishes) the window: at least once
        while the broker is up. When it is away, the stored message remains the reference.
        """
        infos = [
            self.client.publish(alerts_topic(m.station), m.model_dump_json(), qos=1)
            for m in messages
        ]
        deadline = time.monotonic() + PUBACK_WAIT_S
        acked = True
        for info in infos:
            try:  # paho raises when the message went to its queue while disconnected
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                acked = acked and info.is_published()
            except (RuntimeError, ValueError):
                acked = False
        if not acked:
            logger.warning("alert messages not acknowledged within %.0f s", PUBACK_WAIT_S)
        return acked

    def close(self) -> None:
        """Disconnect, after paho has sent what it can."""
        self.client.disconnect()
        self.client.loop_stop()


def _fwi_stations(rules: Sequence[Rule]) -> bool:
    return any(rule.parameter == "fwi" for rule in rules)


class AlertService:
    """One engine, its store, its state file and its clock; ``step`` is one timer tick."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.rules = load_rules(settings.alerts_rules_file)
        self.registry = open_registry(settings)
        self.engine = AlertEngine(self.rules, self.registry)
        self.clock = clock or parse_clock(settings.alerts_clock)
        path = settings.alerts_state_file or settings.data_dir / "alerts" / "state.json"
        self.state_file = StateFile(path)
        self.engine.state, self.fwi = self.state_file.load()
        self.store = AlertStore(settings)
        self.lag = dt.timedelta(seconds=settings.alerts_lag_s)
        self.publisher: Publisher | None = None

    def parameters(self) -> set[str]:
        """Return the stored parameters the rules read (at least one, for liveness)."""
        wanted: set[str] = {"air_temperature"}
        for rule in self.rules:
            if rule.parameter != "fwi":
                wanted.update(rule.inputs())
        return wanted

    def _fwi_observations(self, start: dt.datetime, end: dt.datetime) -> list[Observation]:
        """Return each station's FWI of every day whose value became known in (start, end]."""
        out: list[Observation] = []
        day = (start - NOON_HALF_WINDOW).date()
        while noon(day) + NOON_HALF_WINDOW <= end:
            known = noon(day) + NOON_HALF_WINDOW
            if known > start:
                for station_id, inputs in sorted(self.store.noon_inputs(day).items()):
                    station = self.registry.get(station_id)
                    if station is None:
                        continue
                    (result,) = fire_weather_days([inputs], station.lat, self.fwi.get(station_id))
                    if result.fwi is None:
                        continue  # a missing day: the next one restarts (sensors/fwi.py)
                    self.fwi[station_id] = result.fwi.state
                    out.append(
                        Observation(known, station_id, {"fwi": result.fwi.fwi}, synthetic=True)
                    )
            day += dt.timedelta(days=1)
        return out

    def step(self) -> list[AlertMessage]:
        """Run one window (at most MAX_WINDOW); return the messages stored and published."""
        watermark = self.clock.now() - self.lag
        state = self.engine.state
        if state.cursor is None:
            state.cursor = watermark - dt.timedelta(hours=self.settings.alerts_lookback_h)
        start = state.cursor
        end = min(watermark, start + MAX_WINDOW)
        if end <= start:
            return []
        observations = self.store.observations(self.parameters(), start, end)
        if _fwi_stations(self.rules):
            observations += self._fwi_observations(start, end)
        messages = self.engine.process(observations, end)
        self.store.write_messages(messages)
        if self.publisher is not None:
            self.publisher.publish(messages)
        self.state_file.save(self.engine.state, self.fwi)
        for message in messages:
            logger.info(
                "alert %s %s level=%d at %s", message.identifier, message.msg_type,
                message.level, message.sent.isoformat(),
            )  # fmt: skip
        return messages

    def rollback(self) -> None:
        """Forget an unfinished step: reload the last saved state (its window is replayed)."""
        self.engine.state, self.fwi = self.state_file.load()

    def start(self) -> None:
        """Cancel the episodes of withdrawn rules; connect the publisher."""
        self.publisher = Publisher(self.settings)
        if not self.publisher.connected.wait(PUBACK_WAIT_S):
            logger.warning("alert publisher not connected yet; messages are stored regardless")
        cancels = self.engine.cancel_withdrawn(self.clock.now() - self.lag)
        if cancels:
            self.store.write_messages(cancels)
            self.publisher.publish(cancels)
            self.state_file.save(self.engine.state, self.fwi)

    def close(self) -> None:
        """Stop publishing and close the store."""
        if self.publisher is not None:
            self.publisher.close()
        self.store.close()


def run(settings: Settings) -> int:
    """Run the engine until SIGINT/SIGTERM; return the exit code."""
    service = AlertService(settings)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping the alert engine", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    logger.info(
        "alert engine: %d rules, %d stations, every %.0f s",
        len(service.rules), len(list(service.registry)), settings.alerts_interval_s,
    )  # fmt: skip
    try:
        service.start()
        while not stop.is_set():
            try:
                caught_up = False
                while not caught_up and not stop.is_set():
                    before = service.engine.state.cursor
                    service.step()
                    after = service.engine.state.cursor
                    caught_up = before == after or (
                        after is not None
                        and after >= service.clock.now() - service.lag - dt.timedelta(seconds=1)
                    )
            except AlertsError as exc:
                logger.warning("alert step failed, retrying on the next tick: %s", exc)
                service.rollback()
            except Exception:  # the loop boundary: log, replay the window on the next tick
                logger.exception("alert step failed unexpectedly")
                service.rollback()
            stop.wait(settings.alerts_interval_s)
    finally:
        service.close()
    logger.info("alert engine stopped")
    return 0
