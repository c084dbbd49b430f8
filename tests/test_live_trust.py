"""Issue 8 part 7: the live stream trusts only what the ingester stored.

The finding: a forged or retained message on ``meltemi/accepted/{id}`` (59.9 °C, PM2.5 1999,
year 2099, arbitrary keys) was streamed to every dashboard, and a newly started API replayed
the retained one. Here the forgeries are published with ``mosquitto_pub`` (a client we did not
write) on the real broker, and the API's own SSE answer is read with httpx.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meltemi.services import Mosquitto
from sensors.models import format_ts
from sensors.settings import Settings
from sensors.topics import accepted_topic, status_topic
from tests.api_fixtures import open_stream, serve_api
from tests.helpers import influx_rows, mosquitto_pub, prometheus_value, wait_for

TRUST = "trust-01"  # air temperature and humidity only: PM2.5 is not one of its parameters
OTHER = "trust-02"
REGISTRY = """\
[[station]]
id = "trust-01"
name = "Trust One"
municipality = "Elefsina"
lat = 38.05
lon = 23.55
elevation_m = 12
parameters = ["air_temperature", "relative_humidity"]

[[station]]
id = "trust-02"
name = "Trust Two"
municipality = "Fyli"
lat = 38.1
lon = 23.66
elevation_m = 200
parameters = ["air_temperature", "relative_humidity"]
"""
NS = 1_000_000_000


def _ts(offset_s: float = 0.0) -> str:
    return format_ts(int((time.time() + offset_s) * NS))


def _entry(station: str = TRUST, ts: str | None = None, **values: Any) -> dict[str, Any]:
    """Return an entry exactly as the ingester re-publishes it (sensors.outbound)."""
    return {
        "station": station,
        "ts": ts or _ts(-60),
        "values": values,
        "qc": dict.fromkeys(values, "good"),
        "seq": 1,
    }


def _publish(broker: Mosquitto, topic: str, body: object, *extra: str) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    mosquitto_pub(broker.port, topic, payload, 0, *extra)


def _clear_retained(broker: Mosquitto, topic: str) -> None:
    done = subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port)),
            *("-t", topic, "-r", "-n", "-q", "1"),
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def broker(fresh_broker: Mosquitto) -> Mosquitto:
    """A broker of each test's own: no other test's message on meltemi/accepted/+ (retained or
    not) can add to the exact drop counts asserted here."""
    return fresh_broker


@pytest.fixture
def trust_settings(settings: Settings, broker: Mosquitto, tmp_path: Path) -> Settings:
    """This test's broker, the session's InfluxDB, this module's two-station registry."""
    registry = tmp_path / "trust.toml"
    registry.write_text(REGISTRY)
    return settings.model_copy(update={"stations_file": registry, "mqtt_port": broker.port})


@pytest.fixture
def retained_forgery(broker: Mosquitto) -> Iterator[dict[str, Any]]:
    """A plausible-looking entry left retained on the accepted topic before the API starts."""
    forged = _entry(air_temperature=59.9, relative_humidity=5.0)
    _publish(broker, accepted_topic(TRUST), forged, "-r")
    try:
        yield forged
    finally:
        _clear_retained(broker, accepted_topic(TRUST))


def test_forged_and_retained_accepted_messages_never_reach_the_stream(
    trust_settings, broker, retained_forgery
):
    del retained_forgery  # on the broker before the API subscribes
    with serve_api(trust_settings) as api, open_stream(f"{api.url}/v1/stream") as stream:
        numbered_before = api.feed.hub.last_id
        forgeries = [
            # (topic station, body, the reason it is dropped)
            (TRUST, _entry(pm2_5=1999.0), "unregistered_parameter"),
            (TRUST, _entry(ts="2099-01-01T00:00:00Z", air_temperature=20.0), "ts_in_future"),
            (TRUST, _entry(ts="2000-01-01T00:00:00Z", air_temperature=20.0), "ts_too_old"),
            (TRUST, {**_entry(air_temperature=20.0), "evil": "<script>"}, "malformed"),
            (
                TRUST,
                _entry(air_temperature=20.0) | {"values": {"x": 1.0}},
                "unregistered_parameter",
            ),
            (TRUST, _entry(air_temperature=61.0), "out_of_range"),
            (TRUST, _entry(OTHER, air_temperature=20.0), "station_mismatch"),
            (TRUST, _entry(air_temperature=20.0) | {"qc": {}}, "qc_mismatch"),
            ("nowhere-01", _entry("nowhere-01", air_temperature=20.0), "unknown_station"),
        ]
        for station, body, _reason in forgeries:
            _publish(broker, accepted_topic(station), body)
        # One write's array: a forged entry next to a genuine one; only the genuine is shown.
        genuine = _entry(air_temperature=21.5, relative_humidity=48.0)
        _publish(broker, accepted_topic(TRUST), [_entry(air_temperature=-70.0), genuine])

        event = stream.next_event("reading")
        # The first reading event is the genuine entry, and it is the only event numbered
        # since the stream opened: nothing else entered the ring (resumption) or any queue.
        assert event["data"]["values"]["air_temperature"] == 21.5
        assert event["data"]["ts"] == genuine["ts"]
        assert int(event["id"]) == numbered_before + 1
        assert api.feed.hub.last_id == numbered_before + 1

        expected: dict[str, int] = {"retained": 1}
        for _station, _body, reason in forgeries:
            expected[reason] = expected.get(reason, 0) + 1
        expected["out_of_range"] += 1  # the -70 °C entry of the array
        assert {reason.value: n for reason, n in api.feed.dropped.items()} == expected
        metrics = api.get("/metrics").text
        for reason, count in expected.items():
            sample = prometheus_value(
                metrics, "meltemi_api_live_dropped_total", f'reason="{reason}"'
            )
            assert sample == count, reason

        # A second API started now does not replay the retained forgery either.
        with serve_api(trust_settings) as second, open_stream(f"{second.url}/v1/stream") as fresh:
            wait_for(lambda: second.feed.dropped.total() == 1, 10, message="retained seen")
            assert dict(second.feed.dropped) == {"retained": 1}
            _publish(broker, accepted_topic(TRUST), [genuine])
            replay = fresh.next_event("reading")
            assert replay["data"]["ts"] == genuine["ts"]
            assert second.feed.hub.last_id == int(replay["id"])


def test_a_status_is_data_and_never_rewrites_registry_facts(
    trust_settings, broker, influx, ingester_factory
):
    ingester = ingester_factory(trust_settings)
    db = trust_settings.influx_db
    rewriting = {
        "state": "online",
        "ts": int(time.time()),
        "firmware": "6.6.6",
        "name": "Hacked",
        "municipality": "Nowhere",
        "lat": 0.0,
        "lon": 0.0,
        "elevation_m": 9000,
        "parameters": ["pm2_5"],
    }
    status_ts = int(time.time())
    honest = {"state": "offline", "ts": status_ts, "firmware": "2.1.0"}
    try:
        with serve_api(trust_settings) as api:
            before = api.get(f"/v1/stations/{TRUST}").json()
            with open_stream(f"{api.url}/v1/stream?stations={TRUST}") as stream:
                _publish(broker, status_topic(TRUST), rewriting, "-r")
                _publish(broker, status_topic(TRUST), honest, "-r")
                event = stream.next_event("status")
            # The status with registry keys was not a status; the honest one is shown as data.
            assert event["data"] == {
                "station": TRUST,
                "state": "offline",
                "ts": format_ts(status_ts * NS),
                "firmware": "2.1.0",
            }
            assert dict(api.feed.dropped) == {"status_malformed": 1}

            # The ingester stored the honest one (state and firmware) and quarantined the other.
            wait_for(
                lambda: influx_rows(
                    trust_settings.influx_url,
                    db,
                    f"SELECT state, firmware FROM station_status WHERE station = '{TRUST}'",
                ),
                15,
                message="status stored",
            )
            rows = influx_rows(
                trust_settings.influx_url,
                db,
                f"SELECT state, firmware FROM station_status WHERE station = '{TRUST}'",
            )
            assert [(r["state"], r["firmware"]) for r in rows] == [("offline", "2.1.0")]
            refused = influx_rows(
                trust_settings.influx_url,
                db,
                "SELECT * FROM quarantine.quarantine WHERE station = 'trust-01'",
            )
            assert [r["reason"] for r in refused] == ["invalid_status"]

            after = api.get(f"/v1/stations/{TRUST}").json()
            registry_facts = ("id", "name", "municipality", "lat", "lon", "elevation_m")
            assert {k: after[k] for k in registry_facts} == {
                "id": TRUST,
                "name": "Trust One",
                "municipality": "Elefsina",
                "lat": 38.05,
                "lon": 23.55,
                "elevation_m": 12,
            }
            assert after["parameters"] == ["air_temperature", "relative_humidity"]
            assert {k: before[k] for k in registry_facts} == {k: after[k] for k in registry_facts}
            assert after["status"] == "offline"
            listed = httpx.get(f"{api.url}/v1/stations").json()["stations"]
            assert [s["name"] for s in listed] == ["Trust One", "Trust Two"]
    finally:
        _clear_retained(broker, status_topic(TRUST))
        ingester.stop()
