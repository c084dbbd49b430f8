"""The dashboard's message catalogues, for the API (issue 12).

One JSON file per language in ``api/static/i18n/`` (the same files the page loads), the same keys
in each (tests/test_i18n.py). A value is a string or, for counted messages, an object keyed by
the language's CLDR plural categories. The API uses them so that other city services can reuse
the translations: parameter names (``param.<id>``) and the plain-language levels
(``level.<scale>.<id>`` and ``advice.<scale>.<id>``).

The language of a request: ``?lang=``, else the best supported language of ``Accept-Language``,
else English. A key missing from a catalogue falls back to English and is logged once (the test
suite keeps every catalogue complete).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from sensors.airquality import EAQI_LEVELS, EAQI_SOURCE, EAQI_UPPER_EDGES_UG_M3
from sensors.derived import HEAT_INDEX_CATEGORY_LOWER_BOUNDS_C
from sensors.fwi import EFFIS_LOWER_BOUNDS, EFFIS_SOURCE
from sensors.heat import DI_CLASS_LOWER_BOUNDS, DI_SOURCE

logger = logging.getLogger(__name__)

CATALOGUE_DIR: Final = Path(__file__).resolve().parent / "static" / "i18n"
FALLBACK_LANGUAGE: Final = "en"
# Browser tags that mean one of the shipped languages: Dari reads the Persian catalogue.
LANGUAGE_ALIASES: Final[dict[str, str]] = {"prs": "fa", "fa-af": "fa"}

Message = str | dict[str, str]


class CatalogueError(ValueError):
    """A catalogue file that is not a JSON object of messages."""


@cache
def catalogues() -> dict[str, dict[str, Message]]:
    """Return every catalogue by language code (the file name), read once."""
    found: dict[str, dict[str, Message]] = {}
    for path in sorted(CATALOGUE_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogueError(f"{path.name}: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogueError(f"{path.name}: not a JSON object")
        found[path.stem] = data
    if FALLBACK_LANGUAGE not in found:
        raise CatalogueError(f"no {FALLBACK_LANGUAGE}.json in {CATALOGUE_DIR}")
    return found


def languages() -> tuple[str, ...]:
    """Return the shipped language codes, sorted."""
    return tuple(sorted(catalogues()))


def supported(tag: str) -> str | None:
    """Return the shipped language a BCP 47 tag asks for (``uk-UA`` -> ``uk``), or None."""
    lower = tag.strip().lower()
    if lower in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[lower]
    base = lower.split("-")[0]
    if base in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[base]
    return base if base in catalogues() else None


def _accept_language(header: str) -> list[str]:
    """Return the tags of an Accept-Language header, best first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(lang: str | None, accept_language: str | None) -> str:
    """Return the language of a request: ``?lang=``, then Accept-Language, then English."""
    if lang:
        chosen = supported(lang)
        if chosen:
            return chosen
    for tag in _accept_language(accept_language or ""):
        chosen = supported(tag)
        if chosen:
            return chosen
    return FALLBACK_LANGUAGE


@cache
def _warn_missing(language: str, key: str) -> None:
    logger.warning("catalogue %s has no %r: answering in English", language, key)


def message(language: str, key: str) -> str:
    """Return the message of a key in a language (a plural message: its ``other`` form).

    A key missing from the language's catalogue falls back to English, logged once; a key that
    English lacks too is a programming error (KeyError).
    """
    table = catalogues()
    value = table.get(language, {}).get(key)
    if value is None:
        _warn_missing(language, key)
        value = table[FALLBACK_LANGUAGE][key]
    return value if isinstance(value, str) else value["other"]


def has_message(key: str) -> bool:
    """Return whether the English catalogue has a key."""
    return key in catalogues()[FALLBACK_LANGUAGE]


@dataclass(frozen=True)
class LevelSpec:
    """One level of a scale: its id, the inclusive lower bound (None: the lowest level)."""

    id: str
    lower: float | None


@dataclass(frozen=True)
class ScaleSpec:
    """A plain-language scale: its levels lowest first, the unit of the bounds, the source."""

    id: str
    variable: str
    unit: str
    source: str
    levels: tuple[LevelSpec, ...]


def _from_lower_bounds(
    lowest: str, bounds_highest_first: tuple[tuple[float, str], ...]
) -> tuple[LevelSpec, ...]:
    upward = [LevelSpec(name, lower) for lower, name in reversed(bounds_highest_first)]
    return (LevelSpec(lowest, None), *upward)


# The levels the dashboard explains, with their ids from sensors/ (the catalogue keys follow).
SCALES: Final[tuple[ScaleSpec, ...]] = (
    ScaleSpec(
        "heat_index",
        "heat_index",
        "°C",
        "US NWS heat index categories",
        _from_lower_bounds("none", HEAT_INDEX_CATEGORY_LOWER_BOUNDS_C),
    ),
    ScaleSpec(
        "discomfort",
        "discomfort_index",
        "°C",
        DI_SOURCE,
        _from_lower_bounds("no_discomfort", DI_CLASS_LOWER_BOUNDS),
    ),
    ScaleSpec("fire", "fwi", "1", EFFIS_SOURCE, _from_lower_bounds("very_low", EFFIS_LOWER_BOUNDS)),
    ScaleSpec(
        "air",
        "pm2_5,pm10",
        "µg/m³",
        EAQI_SOURCE,
        tuple(LevelSpec(level, None) for level in EAQI_LEVELS),
    ),
)
EAQI_UPPER_EDGES: Final = EAQI_UPPER_EDGES_UG_M3


def level_name(language: str, scale: str, level: str) -> str:
    """Return the name of a level (``level.<scale>.<id>``) in a language."""
    return message(language, f"level.{scale}.{level}")


def level_advice(language: str, scale: str, level: str) -> str:
    """Return the one-sentence advice of a level (``advice.<scale>.<id>``) in a language."""
    return message(language, f"advice.{scale}.{level}")
