"""The dashboard (``GET /``) in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against the API under uvicorn with the real broker and InfluxDB.

History is seeded straight into InfluxDB in the stored schema (measurement ``readings``, tag
``station``, a float field per parameter and ``{p}_qc`` = "good"); live readings are published
by a station through the real ingester, with mosquitto_pub on ``stations/{id}/readings``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.lineproto import format_point
from sensors.models import format_ts
from sensors.registry import load_registry
from sensors.schema import READINGS, STATION_TAG, qc_field
from sensors.settings import Settings
from sensors.topics import readings_topic
from tests.api_fixtures import ApiServer, serve_api
from tests.helpers import mosquitto_pub, write_lines

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
HISTORY_STATIONS = ("elefsina-01", "aspropyrgos-01")
HISTORY_DAYS = 30
HISTORY_STEP_S = 1800
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 360, "height": 780}

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"
)


def _weather(station_index: int, ts_s: int) -> dict[str, float]:
    """A plausible summer day on the plain: a diurnal cycle, drier when hotter."""
    hour = (ts_s % 86400) / 3600 + 3  # UTC+3 in summer
    day = math.sin((hour - 9) / 24 * 2 * math.pi)
    temperature = 29.0 + 7.0 * day + 0.6 * station_index
    return {
        "air_temperature": round(temperature, 2),
        "relative_humidity": round(max(15.0, 55.0 - 20.0 * day), 1),
        "air_pressure": round(1006.0 - 0.2 * station_index, 1),
        "wind_speed": round(3.0 + 2.0 * max(day, 0.0), 1),
        "wind_direction": float((200 + 20 * station_index) % 360),
    }


def seed(settings: Settings) -> dict[str, float]:
    """Write 30 days of history for two stations and a recent reading for every station.

    Return the newest air temperature of each station.
    """
    registry = load_registry()
    now_s = int(time.time())
    lines = []
    newest: dict[str, float] = {}

    def point(station: str, ts_s: int, values: dict[str, float]) -> str:
        fields: dict[str, float | str] = dict(values)
        fields.update({qc_field(parameter): "good" for parameter in values})
        return format_point(READINGS, {STATION_TAG: station}, fields, ts_s * 1_000_000_000)

    for index, station in enumerate(registry):
        wanted = set(station.parameters)
        if station.id in HISTORY_STATIONS:
            start = now_s - HISTORY_DAYS * 86400
            for ts_s in range(start - start % HISTORY_STEP_S, now_s - 600, HISTORY_STEP_S):
                values = {k: v for k, v in _weather(index, ts_s).items() if k in wanted}
                lines.append(point(station.id, ts_s, values))
        recent = now_s - 60 - index
        values = {k: v for k, v in _weather(index, recent).items() if k in wanted}
        lines.append(point(station.id, recent, values))
        newest[station.id] = values["air_temperature"]
    write_lines(settings.influx_url, settings.influx_db, lines, precision="ns")
    return newest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with playwright_sync.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    """The API on the seeded database."""
    seed(settings)
    with serve_api(settings) as server:
        yield server


class Page:
    """A page in its own browser context, collecting console errors and page errors."""

    def __init__(self, browser: Any, url: str, locale: str, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(
            locale=locale, viewport=viewport, timezone_id="Europe/Athens"
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        self.page.wait_for_selector("#live[data-state='open']", timeout=10_000)

    def text(self, selector: str) -> str:
        """Return the text content of the first match."""
        return str(self.page.locator(selector).first.text_content() or "")

    def wait_chart(self) -> int:
        """Wait until the chart has drawn points; return how many."""
        # Locator assertions run in Playwright's own world: the page's CSP forbids eval, so no
        # wait_for_function with a string predicate.
        expect(self.page.locator("#chart")).to_have_attribute(
            "data-points", re.compile(r"^[1-9][0-9]*$"), timeout=10_000
        )
        return int(self.page.locator("#chart").get_attribute("data-points") or 0)

    def screenshot(self, name: str, full_page: bool = True) -> None:
        """Save a screenshot under docs/screenshots/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(300)  # let the last transition settle
        self.page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)

    def close(self) -> None:
        """Close the context (and its EventSource)."""
        self.context.close()


@pytest.fixture
def open_page(browser: Any, api: ApiServer) -> Iterator[Any]:
    """Open pages on the running API; every one is closed at the end."""
    pages: list[Page] = []

    def make(locale: str = "en-GB", viewport: dict[str, int] | None = None) -> Page:
        page = Page(browser, api.url + "/", locale, viewport or DESKTOP)
        pages.append(page)
        return page

    try:
        yield make
    finally:
        for page in pages:
            page.close()


def test_every_station_appears_and_a_published_reading_shows_live(
    open_page, api, broker, settings, ingester_factory
):
    """The whole path: a station's reading published with mosquitto_pub on its readings topic,
    validated and stored by the real ingester (a subprocess), re-published to the API's live
    feed, and shown on the open page without a reload, within 5 s."""
    ingester_factory(settings)
    registry = load_registry()

    page = open_page()
    assert page.page.locator("#stations li.card").count() == len(registry)
    assert page.page.locator("#map g.station").count() == len(registry)
    for station in registry:
        assert page.page.locator(f"#map g[data-station='{station.id}']").count() == 1
        assert station.name in page.text(f"#stations li[data-station='{station.id}'] h3")

    published_at = time.monotonic()
    reading = {
        "ts": format_ts(time.time_ns() // 1_000_000_000 * 1_000_000_000),
        "seq": 1,
        "values": {"air_temperature": 41.7, "relative_humidity": 30.0},
    }
    mosquitto_pub(broker.port, readings_topic("mandra-01"), json.dumps(reading), 1)

    cell = "#stations li[data-station='mandra-01'] dd[data-p='air_temperature']"
    expect(page.page.locator(cell)).to_have_text("41.7\u00a0°C", timeout=5_000)
    assert time.monotonic() - published_at < 5.0
    # The heat-stress panel follows: 41.7 °C at 30 % is NWS "danger" (heat index 43.7 °C).
    page.page.wait_for_selector("#heat li[data-heat='mandra-01'] .cat-danger", timeout=5_000)
    assert page.errors == []


def test_language_follows_the_browser_and_switches(open_page):
    english = open_page("en-US")
    assert english.page.locator("html").get_attribute("lang") == "en"
    assert english.text("h1") == "Meltemi — Thriasio plain, live"
    assert english.text("#stations-h") == "Stations now"
    english.wait_chart()
    english.screenshot("dashboard-desktop-en.png")

    english.page.get_by_label("Language").select_option("el")
    expect(english.page.locator("html")).to_have_attribute("lang", "el")
    assert english.text("h1") == "Μελτέμι — Θριάσιο Πεδίο, ζωντανά"
    assert english.text("#stations-h") == "Οι σταθμοί τώρα"
    assert english.text("#live") == "Ζωντανά"
    options = english.page.locator("#parameter option").all_text_contents()
    assert "Θερμοκρασία αέρα (°C)" in options
    assert english.errors == []

    greek = open_page("el-GR")
    assert greek.page.locator("html").get_attribute("lang") == "el"
    assert greek.text("[data-range='7d']") == "7 ημέρες"
    greek.wait_chart()
    greek.screenshot("dashboard-desktop-el.png")
    greek.page.get_by_label("Γλώσσα").select_option("en")
    expect(greek.page.locator("[data-range='7d']")).to_have_text("7 days")
    assert greek.errors == []


def test_chart_draws_the_history_and_the_csv_matches(open_page, api):
    page = open_page()
    assert page.page.locator("#station").input_value() == "elefsina-01"
    points_24h = page.wait_chart()
    assert 40 <= points_24h <= 49  # 10-minute windows over 24 h, history every 30 min
    assert page.page.locator("#chart canvas").count() == 1

    page.page.get_by_role("button", name="30 days", exact=True).click()
    expect(page.page.locator("#download")).to_have_attribute(
        "href", re.compile("interval=3h"), timeout=5_000
    )
    points_30d = page.wait_chart()
    assert points_30d > points_24h

    href = page.page.locator("#download").get_attribute("href")
    assert href is not None
    assert "format=csv" in href
    csv = httpx.get(api.url + href, timeout=10)
    assert csv.status_code == 200
    rows = csv.text.strip().splitlines()
    assert rows[0].startswith("time,air_temperature_mean")
    assert len(rows) - 1 == page.wait_chart()

    # Keyboard: Tab to a station on the map and press Enter to chart it.
    target = page.page.locator("#map g[data-station='aspropyrgos-01']")
    target.focus()
    page.page.keyboard.press("Enter")
    expect(page.page.locator("#station")).to_have_value("aspropyrgos-01", timeout=5_000)
    assert page.wait_chart() > 0
    assert page.errors == []


def test_phone_width_has_no_horizontal_scroll(open_page):
    for locale, name in (("en-GB", "dashboard-phone-en.png"), ("el-GR", "dashboard-phone-el.png")):
        phone = open_page(locale, PHONE)
        phone.wait_chart()
        overflow = phone.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert overflow[0] <= overflow[1] == PHONE["width"], overflow
        phone.screenshot(name, full_page=False)
        assert phone.errors == []
