"""Alerts on the live page: the `alert` event of /v1/stream and the dashboard's banner.

The alert engine's messages are built by the real engine (alerts/engine.py) for a registry
station, stored with its own adapter and published with mosquitto_pub on ``meltemi/alerts/…``,
as the engine does. An SSE client sees the `alert` event (and not a retained or mismatched
one); headless Chromium shows the banner within 5 s of the Alert and removes it within 5 s of
the all-clear.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from alerts.engine import AlertEngine, Observation
from alerts.rules import load_rules
from alerts.store import AlertStore
from api.live_check import LiveDrop
from sensors.alerting import AlertMessage, alerts_topic
from sensors.registry import open_registry
from sensors.settings import Settings
from tests.api_fixtures import open_stream, serve_api
from tests.helpers import mosquitto_pub
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
STATION = "elefsina-01"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"
)


def _episode(settings: Settings) -> list[AlertMessage]:
    """Return the Alert, escalation and all-clear of the shipped heat rule at STATION."""
    rules = [r for r in load_rules(None) if r.id == "heat-di"]
    engine = AlertEngine(rules, open_registry(settings))
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=4)
    # (T, RH): Thom DI 27.7 (most discomfort), then 30.9 (severe stress), then 20.9.
    values = [(36.0, 30.0)] * 4 + [(40.0, 35.0)] * 4 + [(25.0, 40.0)] * 12
    observations = [
        Observation(
            t0 + dt.timedelta(minutes=10 * k),
            STATION,
            {"air_temperature": t, "relative_humidity": rh},
        )
        for k, (t, rh) in enumerate(values)
    ]
    messages = engine.process(observations, t0 + dt.timedelta(hours=4))
    assert [(m.msg_type, m.level) for m in messages] == [
        ("Alert", 1), ("Update", 2), ("Update", 0),
    ]  # fmt: skip
    return messages


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


def _publish(settings: Settings, message: AlertMessage, *extra: str) -> None:
    mosquitto_pub(
        settings.mqtt_port, alerts_topic(message.station), message.model_dump_json(), 1, *extra
    )


def test_alert_events_on_the_stream(settings: Settings) -> None:
    alert, escalation, clear = _episode(settings)
    # A retained message (left on the broker before the API subscribes) is never replayed.
    _publish(settings, escalation, "-r")
    try:
        with serve_api(settings) as api, open_stream(f"{api.url}/v1/stream") as stream:
            _publish(settings, alert)
            event = stream.next_event("alert")["data"]
            assert event["identifier"] == alert.identifier
            assert event["msg_type"] == "Alert"
            assert event["active"] is True
            assert event["headline"]["en"] == alert.headline.en
            assert event["cap"] == f"/v1/alerts/{alert.identifier}.cap"
            # Not streamed: a message on another station's topic, and garbage.
            mosquitto_pub(
                settings.mqtt_port, alerts_topic("aspropyrgos-01"), escalation.model_dump_json()
            )
            mosquitto_pub(settings.mqtt_port, alerts_topic(STATION), "{not json")
            _publish(settings, clear)
            event = stream.next_event("alert")["data"]
            assert (event["identifier"], event["all_clear"], event["active"]) == (
                clear.identifier, True, False,
            )  # fmt: skip
            dropped = api.app.state.live_feed.dropped
            assert dropped[LiveDrop.RETAINED] == 1
            assert dropped[LiveDrop.MALFORMED] == 2
    finally:
        subprocess.run(  # an empty retained message clears it (the broker is shared)
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(settings.mqtt_port), "-t",
             alerts_topic(STATION), "-r", "-n"],
            check=True, timeout=30,
        )  # fmt: skip


def test_banner_appears_and_goes(settings: Settings, browser: Any) -> None:
    alert, escalation, clear = _episode(settings)
    store = AlertStore(settings)
    try:
        with serve_api(settings) as api:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.goto(api.url)
            banner = page.locator("#meltemi-alerts")
            expect(banner).to_be_hidden()
            page.wait_for_timeout(500)  # the page's EventSource is open
            store.write_messages([alert])  # the engine stores, then publishes
            _publish(settings, alert)
            expect(banner).to_be_visible(timeout=5000)
            expect(banner).to_contain_text(alert.headline.en, timeout=5000)
            expect(banner).to_contain_text("not an official warning")
            store.write_messages([escalation])
            _publish(settings, escalation)
            expect(banner.locator(".severity-severe")).to_have_count(1, timeout=5000)
            # A reload shows the active alert from /v1/alerts, before any event.
            page.reload()
            expect(banner.locator(".severity-severe")).to_have_count(1, timeout=5000)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "dashboard-alert-en.png"))
            # In Greek, the alert's own Greek texts.
            page.select_option("#lang", "el")
            expect(banner).to_contain_text(escalation.headline.el, timeout=5000)
            expect(banner).to_contain_text("δεν είναι επίσημη προειδοποίηση")
            page.screenshot(path=str(SCREENSHOTS / "dashboard-alert-el.png"))
            store.write_messages([clear])
            _publish(settings, clear)
            expect(banner).to_be_hidden(timeout=5000)
            assert json.loads(api.get("/v1/alerts", status="active").text)["alerts"] == []
    finally:
        store.close()
