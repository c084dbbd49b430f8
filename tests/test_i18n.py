"""The message catalogues (api/static/i18n/*.json) and the API in the residents' languages
(issue 12).

The catalogues are checked as data: the same keys as English in every language, the same
placeholders, the plural forms of each language's CLDR rules (the browser test checks the same
against Chromium's Intl.PluralRules), every key the page uses, the level ids of sensors/. The
API is served by uvicorn and asked with ``?lang=`` and with ``Accept-Language`` (curl as a
witness client for the header).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import i18n
from sensors.airquality import EAQI_LEVELS
from sensors.catalog import PARAMETERS
from sensors.derived import DERIVED, HEAT_INDEX_CATEGORY_LOWER_BOUNDS_C
from sensors.fwi import EFFIS_LOWER_BOUNDS
from sensors.heat import DI_CLASS_LOWER_BOUNDS
from sensors.registry import load_registry
from sensors.settings import Settings
from tests.api_fixtures import ApiServer, serve

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "api" / "static"
CATALOGUES = STATIC / "i18n"
LANGUAGES = ("el", "en", "sq", "ar", "fa", "ur", "uk", "ka")
RTL = {"ar", "fa", "ur"}
# CLDR plural categories (cldr.unicode.org, "Language Plural Rules"); the browser test compares
# them with Chromium's Intl.PluralRules too.
PLURAL_CATEGORIES = {
    "el": {"one", "other"},
    "en": {"one", "other"},
    "sq": {"one", "other"},
    "ar": {"zero", "one", "two", "few", "many", "other"},
    "fa": {"one", "other"},
    "ur": {"one", "other"},
    "uk": {"one", "few", "many", "other"},
    "ka": {"one", "other"},
}
PLACEHOLDER = re.compile(r"\{(\w+)\}")

Catalogue = dict[str, Any]


def load(language: str) -> Catalogue:
    """Return one catalogue as stored."""
    data: Catalogue = json.loads((CATALOGUES / f"{language}.json").read_text(encoding="utf-8"))
    return data


def placeholders(value: str | dict[str, str]) -> set[str]:
    """Return the placeholder names of a message (of all its plural forms)."""
    forms = [value] if isinstance(value, str) else list(value.values())
    return {name for form in forms for name in PLACEHOLDER.findall(form)}


def catalogue_problems(catalogues: dict[str, Catalogue]) -> list[str]:
    """Return what is wrong with a set of catalogues against English, one line per problem."""
    english = catalogues["en"]
    problems = []
    for language, table in sorted(catalogues.items()):
        for key in sorted(set(english) - set(table)):
            problems.append(f"{language}: missing {key}")
        for key in sorted(set(table) - set(english)):
            problems.append(f"{language}: unknown {key}")
        for key in sorted(set(english) & set(table)):
            value, model = table[key], english[key]
            if isinstance(model, str):
                if not isinstance(value, str) or not value.strip():
                    problems.append(f"{language}: {key} is not a non-empty string")
                    continue
            else:
                if not isinstance(value, dict) or set(value) != PLURAL_CATEGORIES[language]:
                    got = sorted(value) if isinstance(value, dict) else type(value).__name__
                    problems.append(f"{language}: {key} plural forms {got}")
                    continue
                if any(not isinstance(form, str) or not form.strip() for form in value.values()):
                    problems.append(f"{language}: {key} has an empty plural form")
                    continue
            extra = placeholders(value) - placeholders(model)
            if extra:
                problems.append(f"{language}: {key} has unknown placeholders {sorted(extra)}")
            if isinstance(model, str) and placeholders(value) != placeholders(model):
                problems.append(f"{language}: {key} placeholders differ from English")
    return problems


@pytest.fixture(scope="module")
def catalogues() -> dict[str, Catalogue]:
    """Every shipped catalogue."""
    return {language: load(language) for language in LANGUAGES}


def test_the_shipped_languages_are_exactly_the_files():
    assert sorted(path.stem for path in CATALOGUES.glob("*.json")) == sorted(LANGUAGES)
    assert i18n.languages() == tuple(sorted(LANGUAGES))


def test_every_catalogue_has_every_english_key_with_its_placeholders(catalogues):
    assert len(catalogues["en"]) == 171
    assert catalogue_problems(catalogues) == []


def test_the_check_catches_a_missing_key_an_extra_one_and_a_wrong_plural(catalogues):
    broken = {language: dict(table) for language, table in catalogues.items()}
    del broken["uk"]["advice.fire.extreme"]
    broken["ka"]["advice.fire.extremee"] = "typo"
    broken["ar"]["nowAt"] = {"one": "{count}", "other": "{count}"}
    broken["el"]["levelOf"] = "επίπεδο {n}"
    broken["sq"]["title"] = "  "
    assert catalogue_problems(broken) == [
        "ar: nowAt plural forms ['one', 'other']",
        "el: levelOf placeholders differ from English",
        "ka: unknown advice.fire.extremee",
        "sq: title is not a non-empty string",
        "uk: missing advice.fire.extreme",
    ]


def test_meta_names_direction_and_locale(catalogues):
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    options = dict(re.findall(r'<option value="(\w+)" lang="\1"[^>]*>([^<]+)</option>', html))
    assert options == {language: catalogues[language]["meta.name"] for language in LANGUAGES}
    for language, table in catalogues.items():
        assert table["meta.dir"] == ("rtl" if language in RTL else "ltr"), language
        assert table["meta.locale"].split("-")[0] == language


def keys_used_by_the_page() -> set[str]:
    """Every key index.html and app.js ask for, literal or built from a known set of ids."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    keys = set(re.findall(r'data-i18n="([^"]+)"', html))
    keys |= set(re.findall(r'\btp?\("([^"]+)"\s*[,)]', script))
    keys |= {f"live_{state}" for state in ("open", "connecting", "closed")}
    keys |= {f"hx_{level}" for level in ("none", "some", "great", "danger")}
    keys |= {f"param.{spec.id}" for spec in PARAMETERS} | {f"param.{d}" for d in DERIVED}
    keys |= {f"compass.{c}" for c in ("N", "NE", "E", "SE", "S", "SW", "W", "NW")}
    keys |= {"unit.mm", "unit.m/s", "meta.name", "meta.dir", "meta.locale"}
    keys |= {"mean", "min", "max", "sum", "scaleNote.fire", "scaleNote.air"}  # t(agg), t(note)
    for station in load_registry():
        keys |= {f"place.{part}" for part in station.name.split(", ")}
        keys.add(f"place.{station.municipality}")
    for scale in i18n.SCALES:
        keys.add(f"scale.{scale.id}")
        for level in scale.levels:
            keys |= {f"level.{scale.id}.{level.id}", f"advice.{scale.id}.{level.id}"}
    return keys


def test_every_key_the_page_uses_is_in_english(catalogues):
    used = keys_used_by_the_page()
    assert {"title", "warnings", "stationsReporting", "nowAt", "levelOf"} <= used
    assert sorted(used - set(catalogues["en"])) == []
    # And the catalogue holds nothing the page does not use but the alerts section, ready for
    # the alert engine (issue 10).
    unused = set(catalogues["en"]) - used
    assert unused
    assert {key for key in unused if not key.startswith(("alert.", "alerts."))} == set()


def test_level_ids_are_the_ids_of_sensors():
    scales = {scale.id: [level.id for level in scale.levels] for scale in i18n.SCALES}
    assert scales == {
        "heat_index": ["none", *[n for _, n in reversed(HEAT_INDEX_CATEGORY_LOWER_BOUNDS_C)]],
        "discomfort": ["no_discomfort", *[n for _, n in reversed(DI_CLASS_LOWER_BOUNDS)]],
        "fire": ["very_low", *[n for _, n in reversed(EFFIS_LOWER_BOUNDS)]],
        "air": list(EAQI_LEVELS),
    }
    assert [len(levels) for levels in scales.values()] == [5, 6, 6, 6]


def test_english_parameter_names_are_the_catalogue_names(catalogues):
    names = {spec.id: spec.name for spec in PARAMETERS}
    names |= {spec.id: spec.name for spec in DERIVED.values()}
    assert len(names) == 22
    for parameter_id, name in names.items():
        assert catalogues["en"][f"param.{parameter_id}"] == name


@pytest.mark.parametrize(
    ("lang", "accept", "want"),
    [
        (None, None, "en"),
        (None, "uk-UA,uk;q=0.9,en;q=0.8", "uk"),
        (None, "de-DE, fa;q=0.5, ar;q=0.7", "ar"),
        (None, "prs-AF", "fa"),
        (None, "de, fr;q=0.9", "en"),
        ("ka", "el-GR", "ka"),
        ("xx", "ur-PK", "ur"),
        ("SQ-al", None, "sq"),
        (None, "el;q=0, en;q=0.1", "en"),
        (None, "*;q=1, ar;q=bad", "en"),
    ],
)
def test_language_negotiation(lang, accept, want):
    assert i18n.negotiate(lang, accept) == want


def test_every_script_has_a_font_installed():
    """The fonts of APT_PACKAGES (Makefile) cover every shipped script, offline."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lines = re.findall(r"^(?:APT|NODE)_PACKAGES [:+]= (.*)$", makefile, re.MULTILINE)
    packages = {name for line in lines for name in line.split()}
    assert {"fonts-dejavu-core", "fonts-nafees", "nodejs", "npm", "chromium"} <= packages
    fc_list = shutil.which("fc-list")
    assert fc_list is not None
    for language in LANGUAGES:
        families = subprocess.run(
            [fc_list, f":lang={language}", "family"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
        assert families, f"no installed font covers {language}"
    urdu = subprocess.run(
        [fc_list, ":lang=ur", "family"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "Nafees" in urdu


@pytest.fixture(scope="module")
def api_server(
    broker: Any, influx: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """The API under uvicorn (the catalogue routes need no data)."""
    influx.create_database("i18n")
    settings = Settings(
        mqtt_port=broker.port,
        influx_url=influx.url,
        influx_db="i18n",
        data_dir=tmp_path_factory.mktemp("i18n") / "var",
        mqtt_client_id="i18n-api",
    )
    with serve(settings) as server:
        yield server


def test_parameters_in_the_requested_language(api_server, catalogues):
    for language in LANGUAGES:
        response = api_server.get("/v1/parameters", lang=language)
        assert response.status_code == 200
        assert response.headers["content-language"] == language
        assert response.headers["vary"] == "Accept-Language"
        names = {p["id"]: p["name"] for p in response.json()["parameters"]}
        assert names == {
            p: catalogues[language][f"param.{p}"] for p in [*(s.id for s in PARAMETERS), *DERIVED]
        }
    ukrainian = api_server.client.get("/v1/parameters", headers={"Accept-Language": "uk-UA"})
    assert ukrainian.headers["content-language"] == "uk"
    assert ukrainian.json()["parameters"][0]["name"] == "Температура повітря"
    head = api_server.client.head("/v1/levels", params={"lang": "uk"})
    assert head.status_code == 200
    assert head.headers["content-language"] == "uk"
    assert head.content == b""
    unknown = api_server.get("/v1/parameters", lang="tlh")
    assert unknown.headers["content-language"] == "en"
    assert unknown.json() == api_server.get("/v1/parameters").json()
    assert unknown.json()["parameters"][0]["name"] == "Air temperature"


def test_levels_in_the_requested_language(api_server, catalogues):
    body = api_server.get("/v1/levels", lang="ar").json()
    assert body["language"] == "ar"
    assert body["official_warnings"] == catalogues["ar"]["official"]
    assert [s["id"] for s in body["scales"]] == ["heat_index", "discomfort", "fire", "air"]
    fire = body["scales"][2]
    assert fire["name"] == catalogues["ar"]["scale.fire"]
    assert [(lv["id"], lv["rank"], lv["lower"], lv["upper"]) for lv in fire["levels"]] == [
        ("very_low", 1, None, 5.2),
        ("low", 2, 5.2, 11.2),
        ("moderate", 3, 11.2, 21.3),
        ("high", 4, 21.3, 38.0),
        ("very_high", 5, 38.0, 50.0),
        ("extreme", 6, 50.0, None),
    ]
    assert fire["levels"][5]["name"] == "شديد للغاية"
    assert fire["levels"][5]["advice"] == catalogues["ar"]["advice.fire.extreme"]
    air = body["scales"][3]["levels"]
    assert air[2]["bands"] == {"pm2_5": [15.0, 50.0], "pm10": [45.0, 120.0]}
    assert air[5]["bands"] == {"pm2_5": [140.0, None], "pm10": [270.0, None]}
    heat = body["scales"][0]["levels"]
    assert [(lv["id"], lv["lower"]) for lv in heat] == [
        ("none", None),
        ("caution", 26.7),
        ("extreme_caution", 32.2),
        ("danger", 39.4),
        ("extreme_danger", 51.7),
    ]
    for language in LANGUAGES:
        scales = api_server.get("/v1/levels", lang=language).json()["scales"]
        for scale in scales:
            for level in scale["levels"]:
                assert level["name"] == catalogues[language][f"level.{scale['id']}.{level['id']}"]
                assert (
                    level["advice"] == catalogues[language][f"advice.{scale['id']}.{level['id']}"]
                )


def test_curl_gets_the_language_it_accepts(api_server):
    curl = shutil.which("curl")
    assert curl is not None
    out = subprocess.run(
        [curl, "-s", "-i", "-H", "Accept-Language: ka-GE,ka;q=0.9", api_server.url + "/v1/levels"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    head, _, body = out.partition("\n\n")  # text mode: universal newlines
    assert "content-language: ka" in head.lower()
    assert json.loads(body)["scales"][3]["levels"][0]["name"] == "კარგი"


def test_openapi_documents_the_language_choice(api_server):
    spec = httpx.get(api_server.url + "/openapi.json", timeout=10).json()
    for path in ("/v1/parameters", "/v1/levels"):
        operation = spec["paths"][path]["get"]
        params = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert params == {("query", "lang"), ("header", "accept-language")}, path
        headers = operation["responses"]["200"]["headers"]
        assert set(headers) == {"Content-Language", "Vary"}


def test_every_safety_message_was_back_translated(catalogues):
    """docs/translations/back-translation.json (the second pass of docs/translations.md) covers
    every advice sentence and the official-warnings statement of every language, and leaves no
    open difference: each one is the same meaning, fixed, or a noted harmless difference."""
    record = json.loads(
        (ROOT / "docs" / "translations" / "back-translation.json").read_text(encoding="utf-8")
    )
    safety = {k for k in catalogues["en"] if k.startswith("advice.")} | {
        "official",
        "warningsIntro",
    }
    assert len(safety) == 25
    assert set(record) - {"_about"} == set(LANGUAGES) - {"en"}
    for language, entries in record.items():
        if language == "_about":
            continue
        assert set(entries) == safety, language
        for key, (back, verdict) in entries.items():
            assert back.strip(), (language, key)
            assert verdict == "same" or verdict.startswith(("fixed: ", "note: ")), (language, key)
