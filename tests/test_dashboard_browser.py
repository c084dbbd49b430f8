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
import subprocess
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
from tests.helpers import CHROMIUM, SCREENSHOTS, mosquitto_pub, write_lines

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

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


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiServer]:
    """The API on the seeded database, without the per-address rate limit: these tests load the
    page dozens of times from one address, as a crowd would (the limit has tests of its own)."""
    seed(settings)
    with serve_api(settings.model_copy(update={"api_rate_per_s": 0.0})) as server:
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
        """Save a screenshot under SCREENSHOTS (docs/screenshots/ when asked to)."""
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


# --- every language (issue 12) ----------------------------------------------------------------

AXE_DIR = Path(__file__).resolve().parent / "axe"
I18N_DIR = Path(__file__).resolve().parent.parent / "api" / "static" / "i18n"
LANGUAGES = ("el", "en", "sq", "ar", "fa", "ur", "uk", "ka")
RTL = {"ar", "fa", "ur"}
SCREENSHOT_LANGUAGES = ("el", "en", "ar", "uk")
ZOOM_200 = {"width": DESKTOP["width"] // 2, "height": DESKTOP["height"] // 2}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# The live reading of each language's page: 30.0 + index/10 °C at Mandra, as the page writes it.
LIVE_EXPECTED = {
    "en": "30.1\u00a0°C",
    "el": "30,0\u00a0°C",
    "ar": "٣٠٫٣\u00a0°C",
    "fa": "۳۰٫۴\u00a0°C",
    "uk": "30,6\u00a0°C",
}


def catalogue(language: str) -> dict[str, Any]:
    """Return a message catalogue as shipped."""
    data: dict[str, Any] = json.loads((I18N_DIR / f"{language}.json").read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core (npm, pinned by tests/axe/package-lock.json), installed with npm ci if missing."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is missing: make deps installs nodejs and npm"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=AXE_DIR,
            check=True,
            timeout=600,
            capture_output=True,
        )
    return script.read_text("utf-8")


def axe_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """Run axe-core's WCAG 2.1 A and AA rules on the page; return the violations, short."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source)
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
            return result.violations.map((v) => ({ id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": "
                    + n.failureSummary) }));
        }""",
        AXE_TAGS,
    )
    return found


def horizontal_overflow(page: Any) -> list[int]:
    """Return [scrollWidth, clientWidth] of the document."""
    sizes: list[int] = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return sizes


def settled_overflow(page: Any, width: int, deadline_s: float = 5.0) -> list[int]:
    """Return [scrollWidth, clientWidth] once the page fits the width (the chart redraws on its
    ResizeObserver), or as it is at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        sizes = horizontal_overflow(page)
        if (sizes[0] <= sizes[1] == width) or time.monotonic() > end:
            return sizes
        page.wait_for_timeout(50)


def test_every_language_page_is_translated_accessible_and_live(
    browser, api, broker, settings, ingester_factory, axe_source
):
    """One page, visited in every language in test mode (?i18n=test shows a missing key as
    ⟦key⟧): lang and dir, no untranslated key, plural categories as Chromium's Intl, bdi
    isolation, axe-core clean, no horizontal scroll at 360 px and at 200 % zoom, and a reading
    published by a station appears live, formatted for the language."""
    ingester_factory(settings)
    registry = load_registry()
    context = browser.new_context(locale="en-GB", viewport=DESKTOP, timezone_id="Europe/Athens")
    page = context.new_page()
    errors: list[str] = []
    warnings: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # One reading per language, each at a time of its own: history is write-once, so a second
    # value for the same second would be refused as a conflict.
    first_ts_s = time.time_ns() // 1_000_000_000 - len(LANGUAGES)
    try:
        for index, language in enumerate(LANGUAGES):
            table = catalogue(language)
            page.set_viewport_size(DESKTOP)
            page.goto(f"{api.url}/?lang={language}&i18n=test")
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            page.wait_for_selector("#live[data-state='open']", timeout=10_000)
            html = page.locator("html")
            assert html.get_attribute("lang") == language
            assert html.get_attribute("dir") == ("rtl" if language in RTL else "ltr")
            assert page.title() == table["title"]
            assert page.locator("h1").text_content() == table["title"]
            assert page.locator("#warnings-h").text_content() == table["warnings"]
            assert page.locator("#lang").input_value() == language
            # Direction is data in the map and the chart.
            directions = page.evaluate(
                "['map', 'chart', 'main'].map((id) => getComputedStyle("
                "document.getElementById(id)).direction)"
            )
            assert directions == ["ltr", "ltr", "rtl" if language in RTL else "ltr"]
            # Station names and numbers with units are isolated.
            assert page.locator("#stations li h3 button bdi").count() == len(registry)
            assert page.locator("#stations dd bdi").count() >= len(registry)
            # Plural forms: the catalogue's are Chromium's categories for the locale.
            categories = page.evaluate(
                "(locale) => new Intl.PluralRules(locale).resolvedOptions().pluralCategories",
                table["meta.locale"],
            )
            assert sorted(categories) == sorted(table["nowAt"]), language
            # A counted message takes the language's plural form and its digits.
            reporting = page.evaluate(
                "([locale, n, total]) => { const f = new Intl.NumberFormat(locale);"
                " return [new Intl.PluralRules(locale).select(n), f.format(n), f.format(total),"
                " f.format(15)]; }",
                [table["meta.locale"], len(registry), len(registry)],
            )
            form = table["stationsReporting"][reporting[0]]
            want_summary = (
                form.replace("{count}", reporting[1])
                .replace("{total}", reporting[2])
                .replace("{minutes}", reporting[3])
            )
            expect(page.locator("#summary")).to_have_text(want_summary)
            # Colour is never alone: every level has its name, its rank in words and, from the
            # second level up, a pattern over the colour of its swatch.
            levels = page.locator("#warnings li.level")
            assert levels.count() == 5 + 6 + 6 + 6
            patterns = page.evaluate(
                "() => [...document.querySelectorAll('#warnings li.level')].map((li) => ["
                "li.querySelector('strong').textContent.length > 0,"
                "li.querySelector('.rank').textContent.length > 0,"
                "getComputedStyle(li.querySelector('.swatch')).backgroundImage !== 'none'])"
            )
            ranks = [0, 1, 2, 3, 4] + [0, 1, 2, 3, 4, 5] * 3
            assert patterns == [[True, True, rank > 0] for rank in ranks], language

            value = round(30.0 + index / 10, 1)
            reading = {
                "ts": format_ts((first_ts_s + index) * 1_000_000_000),
                "seq": index + 1,
                "values": {"air_temperature": value, "relative_humidity": 40.0},
            }
            mosquitto_pub(broker.port, readings_topic("mandra-01"), json.dumps(reading), 1)
            want = page.evaluate(
                "([locale, v]) => new Intl.NumberFormat(locale, {minimumFractionDigits: 1,"
                " maximumFractionDigits: 1}).format(v) + '\\u00a0°C'",
                [table["meta.locale"], value],
            )
            if language in LIVE_EXPECTED:
                assert want == LIVE_EXPECTED[language]
            cell = "#stations li[data-station='mandra-01'] dd[data-p='air_temperature']"
            expect(page.locator(cell)).to_have_text(want, timeout=5_000)

            text = page.locator("body").inner_text()
            assert "⟦" not in text, language
            assert html.get_attribute("data-i18n-missing") is None
            assert axe_violations(page, axe_source) == [], language

            if language in SCREENSHOT_LANGUAGES:
                page.wait_for_timeout(300)
                page.screenshot(path=str(SCREENSHOTS / f"dashboard-{language}.png"))
            for viewport in (PHONE, ZOOM_200):
                page.set_viewport_size(viewport)
                overflow = settled_overflow(page, viewport["width"])
                assert overflow[0] <= overflow[1] == viewport["width"], (language, overflow)
            if language == "ar":
                page.set_viewport_size(PHONE)
                page.screenshot(path=str(SCREENSHOTS / "dashboard-phone-ar.png"))
        # The harness can fail: an image without a text alternative is a violation.
        page.evaluate(
            "() => { const i = document.createElement('img'); i.src = '/static/favicon.svg';"
            " document.getElementById('main').append(i); }"
        )
        assert [v["id"] for v in axe_violations(page, axe_source)] == ["image-alt"]
        assert errors == []
        assert [w for w in warnings if "i18n" in w] == []
    finally:
        context.close()


def test_a_missing_key_falls_back_to_english_visibly_in_test_mode_and_never_silently(browser, api):
    """Albanian without two messages (served so by the browser's router): in test mode the
    English text is marked ⟦key⟧; in production it is English, marked lang="en" for screen
    readers, warned on the console and listed on <html data-i18n-missing>."""
    broken = catalogue("sq")
    del broken["warnings"]
    broken["nowAt"] = {"other": broken["nowAt"]["other"]}  # no "one" form
    context = browser.new_context(locale="sq-AL", viewport=DESKTOP, timezone_id="Europe/Athens")
    context.route(
        "**/static/i18n/sq.json",
        lambda route: route.fulfill(json=broken, headers={"Cache-Control": "no-store"}),
    )
    page = context.new_page()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    try:
        page.goto(api.url + "/?i18n=test")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "sq"
        heading = page.locator("#warnings-h")
        assert heading.text_content() == "⟦warnings⟧ Warnings in plain words"
        assert heading.get_attribute("lang") == "en"
        assert page.locator("h1").text_content() == catalogue("sq")["title"]
        missing = page.locator("html").get_attribute("data-i18n-missing")
        assert missing is not None
        assert "sq:warnings" in missing.split()
        assert any('no "warnings" in the sq catalogue' in w for w in warnings), warnings

        warnings.clear()
        page.goto(api.url + "/")  # production: the language from the browser (sq-AL)
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert heading.text_content() == "Warnings in plain words"
        assert heading.get_attribute("lang") == "en"
        assert "⟦" not in page.locator("body").inner_text()
        assert "sq:warnings" in (page.locator("html").get_attribute("data-i18n-missing") or "")
        assert any('no "warnings" in the sq catalogue' in w for w in warnings), warnings
    finally:
        context.close()


def _focused(page: Any) -> str:
    """Describe the focused element: its id, range, station, link or tag."""
    described: str = page.evaluate(
        """() => {
            const a = document.activeElement;
            if (!a || a === document.body) return "body";
            if (a.id) return "#" + a.id;
            if (a.dataset.range) return "range:" + a.dataset.range;
            if (a.dataset.station) return "map:" + a.dataset.station;
            const card = a.closest("li[data-station]");
            if (card) return "card:" + card.dataset.station;
            if (a.tagName === "A") return "link:" + a.getAttribute("href");
            return a.tagName.toLowerCase();
        }"""
    )
    return described


def _tab_to(page: Any, target: str, limit: int = 80) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused(page) == target:
            return
    raise AssertionError(f"Tab never reached {target}")


def test_keyboard_alone_reaches_and_operates_every_control(open_page):
    """On the Arabic page (right to left): Tab reaches every control once, each with a visible
    focus indicator, and the language, parameter and station choices, the periods, a station
    card and the map all work from the keyboard."""
    page = open_page("ar")
    registry = list(load_registry())
    seen: list[str] = []
    outlines: dict[str, str] = {}
    for _ in range(120):
        page.page.keyboard.press("Tab")
        name = _focused(page.page)
        if name in seen or name == "body":  # past the last control: the browser's own UI
            break
        seen.append(name)
        outlines[name] = page.page.evaluate(
            "() => getComputedStyle(document.activeElement).outlineStyle"
        )
    links = {
        "link:https://civilprotection.gov.gr/",
        "link:https://civilprotection.gov.gr/arxeio-imerision-xartwn",
        "link:https://www.emy.gr/",
        "link:https://www.112.gov.gr/",
    }
    want = {"link:#main", "#lang", "#parameter", "#station", "#download", "link:/docs"}
    want |= {f"range:{r}" for r in ("24h", "7d", "30d")} | links
    want |= {f"map:{s.id}" for s in registry} | {f"card:{s.id}" for s in registry}
    assert want <= set(seen), sorted(want - set(seen))
    assert len(seen) == len(set(seen))
    # Every HTML control shows where the focus is (the map's stations change their ring).
    assert [
        n for n, style in outlines.items() if style == "none" and not n.startswith("map:")
    ] == []

    page.page.locator("#lang").focus()
    page.page.keyboard.press("ArrowDown")  # العربية -> فارسی
    expect(page.page.locator("html")).to_have_attribute("lang", "fa")
    page.page.keyboard.press("ArrowUp")
    expect(page.page.locator("html")).to_have_attribute("lang", "ar")
    page.page.locator("#lang").blur()

    page.page.locator("#parameter").focus()
    page.page.keyboard.press("ArrowDown")
    expect(page.page.locator("#download")).to_have_attribute(
        "href", re.compile("parameters=apparent_temperature"), timeout=5_000
    )
    page.page.locator("#station").focus()
    page.page.keyboard.press("ArrowDown")
    expect(page.page.locator("#station")).to_have_value(registry[1].id)

    page.page.locator("#station").focus()
    _tab_to(page.page, "range:7d")
    page.page.keyboard.press("Enter")
    expect(page.page.locator("[data-range='7d']")).to_have_attribute("aria-pressed", "true")
    page.page.keyboard.press("Tab")
    page.page.keyboard.press("Space")
    expect(page.page.locator("[data-range='30d']")).to_have_attribute("aria-pressed", "true")

    _tab_to(page.page, f"card:{registry[4].id}")
    page.page.keyboard.press("Enter")
    expect(page.page.locator("#station")).to_have_value(registry[4].id, timeout=5_000)
    assert page.wait_chart() > 0
    assert page.errors == []


def test_language_comes_from_the_address_then_the_stored_choice_then_the_browser_then_greek(
    browser, api
):
    """?lang= first, then the visitor's stored choice, then navigator.languages, then Greek."""
    german = browser.new_context(locale="de-DE", viewport=PHONE, timezone_id="Europe/Athens")
    try:
        page = german.new_page()
        page.goto(api.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "el"  # nothing we speak: Greek
        page.locator("#lang").select_option("uk")  # stored, and written into the address
        expect(page.locator("html")).to_have_attribute("lang", "uk")
        assert page.url.endswith("/?lang=uk")
        page.goto(api.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "uk"  # the stored choice
        page.goto(api.url + "/?lang=ka")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "ka"  # the address wins
        page.goto(api.url + "/?lang=xx")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "uk"  # unknown: next in line
    finally:
        german.close()
    persian = browser.new_context(locale="fa-IR", viewport=PHONE, timezone_id="Europe/Athens")
    try:
        page = persian.new_page()
        page.goto(api.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        assert page.locator("html").get_attribute("lang") == "fa"  # the browser's language
        assert page.locator("html").get_attribute("dir") == "rtl"
    finally:
        persian.close()
