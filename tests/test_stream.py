"""``GET /v1/stream`` under uvicorn against the real broker: readings published with mosquitto_pub
on ``meltemi/accepted/{id}`` (what the ingester re-publishes) arrive as SSE events."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from api.live import LiveFeed, StreamHub, StreamLimitReached
from sensors.derived import compute_derived
from sensors.models import format_ts
from sensors.settings import Settings
from sensors.topics import StationId, accepted_topic, status_topic
from tests.api_fixtures import ApiServer, SseStream, open_stream, serve_api
from tests.helpers import mosquitto_pub, wait_for

HEARTBEAT_S = 0.3  # short, so that the tests see heartbeats and notice closed clients quickly


def recent(minute: int = 0) -> str:
    """Return a ts ``minute`` minutes after the start of the hour before the current one.

    Entries must lie inside the contract's time window to be streamed (api.live_check).
    """
    hour_s = (int(time.time()) // 3600 - 1) * 3600
    return format_ts((hour_s + 60 * minute) * 1_000_000_000)


def entry(station: str, ts: str, **values: float) -> str:
    """Return a LatestEntry JSON as the ingester re-publishes it."""
    return json.dumps(
        {
            "station": station,
            "ts": ts,
            "values": values,
            "qc": dict.fromkeys(values, "good"),
            "seq": 7,
        }
    )


def _configure(max_streams: int = 3) -> Callable[[LiveFeed], None]:
    def configure(feed: LiveFeed) -> None:
        feed.heartbeat_s = HEARTBEAT_S
        feed.hub.max_streams = max_streams

    return configure


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    """The API with a short heartbeat and a cap of 3 streams."""
    with serve_api(settings, _configure(3)) as server:
        yield server


def test_reading_published_on_the_broker_is_streamed_with_derived_values(api, broker):
    with open_stream(f"{api.url}/v1/stream") as stream:
        payload = entry(
            "elefsina-01",
            ts := recent(),
            air_temperature=35.0,
            relative_humidity=40.0,
            wind_speed=3.0,
            pm10=41.5,
        )
        mosquitto_pub(broker.port, accepted_topic("elefsina-01"), payload, 0)
        event = stream.next_event("reading")
    data = event["data"]
    assert event["id"] is not None
    assert event["id"].isdigit()
    assert data["station"] == "elefsina-01"
    assert data["ts"] == ts
    assert data["seq"] == 7
    expected = compute_derived(
        {
            "air_temperature": np.array([35.0]),
            "relative_humidity": np.array([40.0]),
            "wind_speed": np.array([3.0]),
        }
    )
    assert set(data["values"]) == {
        "air_temperature",
        "relative_humidity",
        "wind_speed",
        "pm10",
        "pm10_eaqi",  # the newest reading's level (indicative; series use hourly means)
        *expected,
    }
    assert data["values"]["pm10_eaqi"] == 1.0  # 41.5 µg/m³ is fair (15-45)
    assert data["qc"]["pm10_eaqi"] == "good"  # taken at 40 % RH
    for derived_id, values in expected.items():
        assert data["values"][derived_id] == pytest.approx(values[0], abs=0.005)
        assert data["qc"][derived_id] == "good"
    assert data["values"]["pm10"] == 41.5


def test_station_filter_and_its_validation(api, broker):
    with open_stream(f"{api.url}/v1/stream?stations=elefsina-02,fyli-01") as stream:
        for station in ("elefsina-01", "elefsina-02"):
            body = entry(station, recent(1), air_temperature=30.0)
            mosquitto_pub(broker.port, accepted_topic(station), body, 0)
        assert stream.next_event("reading")["data"]["station"] == "elefsina-02"

    unknown = httpx.get(f"{api.url}/v1/stream", params={"stations": "elefsina-01,nowhere-9"})
    assert unknown.status_code == 404
    assert "nowhere-9" in unknown.json()["detail"]
    for bad in ("Elefsina!", "", " , "):
        response = httpx.get(f"{api.url}/v1/stream", params={"stations": bad})
        assert response.status_code == 400, bad
        assert response.json()["detail"].startswith("stations:")


def test_unknown_or_malformed_accepted_messages_are_not_streamed(api, broker):
    with open_stream(f"{api.url}/v1/stream") as stream:
        # Not registered, not the topic's station, not a LatestEntry: none reaches a client.
        mosquitto_pub(
            broker.port,
            accepted_topic("nowhere-9"),
            entry("nowhere-9", recent(), air_temperature=1.0),
            0,
        )
        mosquitto_pub(
            broker.port,
            accepted_topic("mandra-01"),
            entry("fyli-01", recent(), air_temperature=1.0),
            0,
        )
        mosquitto_pub(broker.port, accepted_topic("mandra-01"), b"{not json", 0)
        mosquitto_pub(
            broker.port,
            accepted_topic("mandra-01"),
            entry("mandra-01", recent(), air_temperature=2.0),
            0,
        )
        data = stream.next_event("reading")["data"]
    assert data["station"] == "mandra-01"
    assert data["values"]["air_temperature"] == 2.0


def test_last_event_id_resumes_with_what_was_missed(api, broker):
    ids = []
    with open_stream(f"{api.url}/v1/stream?stations=magoula-01") as stream:
        for minute in range(3):
            ts = recent(minute)
            body = entry("magoula-01", ts, air_temperature=20.0 + minute)
            mosquitto_pub(broker.port, accepted_topic("magoula-01"), body, 0)
            ids.append(stream.next_event("reading")["id"])
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)

    with open_stream(
        f"{api.url}/v1/stream?stations=magoula-01", {"Last-Event-ID": ids[0]}
    ) as resumed:
        replay = [resumed.next_event("reading", 2.0) for _ in range(2)]
    assert [event["id"] for event in replay] == ids[1:]
    assert [event["data"]["values"]["air_temperature"] for event in replay] == [21.0, 22.0]

    # An id older than the replay window: the client is told to re-read /v1/latest.
    with open_stream(f"{api.url}/v1/stream", {"Last-Event-ID": "1"}) as too_old:
        too_old.next_block(lambda b: b.get("event") == "reset", 2.0)


def test_streams_beyond_the_cap_get_503(api):
    first = SseStream(f"{api.url}/v1/stream")
    second = SseStream(f"{api.url}/v1/stream")
    third = SseStream(f"{api.url}/v1/stream")
    try:
        for stream in (first, second, third):
            assert stream.response.status_code == 200
        refused = httpx.get(f"{api.url}/v1/stream", timeout=5)
        assert refused.status_code == 503
        assert "too many live streams" in refused.json()["detail"]
        assert refused.headers["retry-after"].isdigit()
    finally:
        third.close()
    # The closed stream's slot is freed (noticed at its next heartbeat at the latest).
    wait_for(lambda: api.feed.hub.active == 2, 5, message="a slot freed")
    with open_stream(f"{api.url}/v1/stream") as fourth:
        fourth.next_block(lambda b: "heartbeat" in b.get("comments", []), 2.0)
    first.close()
    second.close()


def test_heartbeat_comment_at_the_configured_interval(api):
    with open_stream(f"{api.url}/v1/stream") as stream:
        started = time.monotonic()
        for _ in range(3):
            stream.next_block(lambda b: "heartbeat" in b.get("comments", []), 2.0)
        elapsed = time.monotonic() - started
    assert 2 * HEARTBEAT_S <= elapsed < 3 * HEARTBEAT_S + 1.5


def test_status_changes_are_streamed_and_snapshot_on_connect(api, broker):
    with open_stream(f"{api.url}/v1/stream?stations=fyli-01") as stream:
        body = json.dumps({"state": "offline", "ts": 1784548800, "firmware": "1.2.3"})
        mosquitto_pub(broker.port, status_topic("fyli-01"), body, 1, "-r")
        event = stream.next_event("status")
    assert event["data"] == {
        "station": "fyli-01",
        "state": "offline",
        "ts": "2026-07-20T12:00:00Z",
        "firmware": "1.2.3",
    }
    # A new client learns every station's current status first.
    with open_stream(f"{api.url}/v1/stream?stations=fyli-01") as fresh:
        assert fresh.next_event("status", 2.0)["data"]["state"] == "offline"
    # Clear the retained message (a zero-length retained publish) so later tests start clean.
    cleared = subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port)),
            *("-t", status_topic("fyli-01"), "-r", "-n", "-q", "1"),
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert cleared.returncode == 0, cleared.stderr


def test_hub_drops_a_slow_client_instead_of_growing():
    hub = StreamHub(max_streams=5, client_queue_size=3)
    slow = hub.subscribe(None)
    fast = hub.subscribe(frozenset({"fyli-01"}))
    for minute in range(4):
        hub.publish("reading", StationId("mandra-01"), f'{{"n":{minute}}}')
    assert slow.dropped
    assert hub.dropped_clients == 1
    assert slow.queue.qsize() == 1
    assert slow.queue.get_nowait() is None  # the end marker: its stream closes
    assert not fast.dropped  # filtered out: nothing queued for it
    assert fast.queue.empty()
    assert hub.active == 1


@pytest.mark.parametrize(
    ("ring_size", "last", "replayed", "gap"),
    [
        pytest.param(10, 2, [3, 4, 5], False, id="within-ring"),
        pytest.param(10, 5, [], False, id="up-to-date"),
        pytest.param(3, 1, [3, 4, 5], True, id="older-than-ring"),
        pytest.param(10, 99, [], True, id="not-our-id"),
    ],
)
def test_hub_resumption_window(ring_size, last, replayed, gap):
    hub = StreamHub(max_streams=5, ring_size=ring_size)
    first = hub.last_id + 1
    for n in range(5):
        hub.publish("reading", StationId("mandra-01"), f'{{"n":{n}}}')
    last_id = first + last - 1 if last != 99 else hub.last_id + 99
    subscription = hub.subscribe(None, last_id)
    assert [event.id - first + 1 for event in subscription.backlog] == replayed
    assert subscription.gap is gap
    assert subscription.resumed


def test_hub_caps_in_total_and_per_address():
    hub = StreamHub(max_streams=3, max_streams_per_client=2)
    first = hub.subscribe(None, client="192.0.2.1")
    hub.subscribe(None, client="192.0.2.1")
    with pytest.raises(StreamLimitReached, match="from one address"):
        hub.subscribe(None, client="192.0.2.1")
    hub.subscribe(None, client="192.0.2.2")
    with pytest.raises(StreamLimitReached, match="limit 3"):
        hub.subscribe(None, client="192.0.2.3")
    hub.unsubscribe(first)
    hub.unsubscribe(first)  # idempotent
    hub.subscribe(None, client="192.0.2.1")
