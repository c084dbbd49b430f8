"""``GET /v1/parameters``: the catalogue (CONTRACT §4), stored parameters then derived ones;
``GET /v1/levels``: the plain-language levels (heat, fire weather, air quality) with one sentence
of advice each. Both answer in the requested language (``?lang=`` or ``Accept-Language``,
English for anything else; issue 12), from the dashboard's message catalogues (api/i18n.py).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict

from api import i18n
from api.models import BandOut, ParameterOut, ParametersOut
from sensors.catalog import PARAMETERS
from sensors.derived import DERIVED

router = APIRouter(tags=["catalogue"])

LangQuery = Annotated[
    str | None,
    Query(
        description=(
            "language of names and advice (el, en, sq, ar, fa, ur, uk, ka); wins over "
            "Accept-Language; an unknown language answers in English"
        ),
        max_length=35,
        examples=["el"],
    ),
]
AcceptLanguage = Annotated[
    str | None,
    Header(
        description="used when ?lang= is absent: the best shipped language, else English",
        max_length=512,
    ),
]
LANGUAGE_HEADERS_DOC: Final = {
    "Content-Language": {"description": "the language of the answer", "schema": {"type": "string"}},
    "Vary": {"description": "Accept-Language", "schema": {"type": "string"}},
}


def _name(language: str, parameter_id: str, default: str) -> str:
    key = f"param.{parameter_id}"
    return i18n.message(language, key) if i18n.has_message(key) else default


def catalogue(language: str = i18n.FALLBACK_LANGUAGE) -> ParametersOut:
    """Return every stored parameter and every derived one (``derived: true``, with its
    inputs, source and classes: the page reads them here rather than repeating them), names in
    a language."""
    stored = [
        ParameterOut(
            id=spec.id,
            name=_name(language, spec.id, spec.name),
            unit=spec.unit,
            min=spec.min,
            max=spec.max,
            agg=spec.default_agg,
        )
        for spec in PARAMETERS
    ]
    derived = [
        ParameterOut(
            id=spec.id,
            name=_name(language, spec.id, spec.name),
            unit=spec.unit,
            min=None,
            max=None,
            agg=spec.default_agg,
            derived=True,
            inputs=list(spec.inputs),
            source=spec.source,
            bands=[BandOut(id=b.id, label=b.label, min=b.min, max=b.max) for b in spec.bands]
            or None,
            band_edge=spec.edge if spec.bands else None,
            min_interval="1d" if spec.daily else "1h" if spec.hourly else None,
            note=spec.note,
        )
        for spec in DERIVED.values()
    ]
    return ParametersOut(parameters=stored + derived)


_CATALOGUES: Final = {language: catalogue(language) for language in i18n.languages()}


def _language_headers(response: Response, language: str) -> None:
    response.headers["Content-Language"] = language
    response.headers["Vary"] = "Accept-Language"


@router.get(
    "/v1/parameters",
    response_model=ParametersOut,
    responses={200: {"headers": LANGUAGE_HEADERS_DOC}},
)
async def parameters(
    response: Response, lang: LangQuery = None, accept_language: AcceptLanguage = None
) -> ParametersOut:
    """Return the parameter catalogue: id, name (in the requested language), unit, physical
    range, default aggregation."""
    language = i18n.negotiate(lang, accept_language)
    _language_headers(response, language)
    return _CATALOGUES[language]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelOut(_Out):
    """One level: its id and rank (1 = lowest), name and advice in the requested language, and
    its band: ``lower`` inclusive, ``upper`` exclusive (None: open), or per pollutant for air
    quality (``bands``: upper edge inclusive, EAQI)."""

    id: str
    rank: int
    name: str
    advice: str
    lower: float | None = None
    upper: float | None = None
    bands: dict[str, tuple[float | None, float | None]] | None = None


class ScaleOut(_Out):
    """A scale: what it is computed from, in which unit, its source and its levels."""

    id: str
    name: str
    variable: str
    unit: str
    source: str
    levels: list[LevelOut]


class LevelsOut(_Out):
    """``/v1/levels``."""

    language: str
    official_warnings: str
    scales: list[ScaleOut]


def _air_bands(rank: int) -> dict[str, tuple[float | None, float | None]]:
    bands: dict[str, tuple[float | None, float | None]] = {}
    for pollutant, edges in i18n.EAQI_UPPER_EDGES.items():
        lower = 0.0 if rank == 0 else edges[rank - 1]
        upper = edges[rank] if rank < len(edges) else None
        bands[pollutant] = (lower, upper)
    return bands


def levels_in(language: str) -> LevelsOut:
    """Return every scale with its levels named and explained in a language."""
    scales = []
    for scale in i18n.SCALES:
        levels = []
        for rank, level in enumerate(scale.levels):
            following = scale.levels[rank + 1].lower if rank + 1 < len(scale.levels) else None
            levels.append(
                LevelOut(
                    id=level.id,
                    rank=rank + 1,
                    name=i18n.level_name(language, scale.id, level.id),
                    advice=i18n.level_advice(language, scale.id, level.id),
                    lower=level.lower,
                    upper=following,
                    bands=_air_bands(rank) if scale.id == "air" else None,
                )
            )
        scales.append(
            ScaleOut(
                id=scale.id,
                name=i18n.message(language, f"scale.{scale.id}"),
                variable=scale.variable,
                unit=scale.unit,
                source=scale.source,
                levels=levels,
            )
        )
    return LevelsOut(
        language=language, official_warnings=i18n.message(language, "official"), scales=scales
    )


_LEVELS: Final = {language: levels_in(language) for language in i18n.languages()}


@router.get(
    "/v1/levels",
    response_model=LevelsOut,
    responses={200: {"headers": LANGUAGE_HEADERS_DOC}},
)
async def levels(
    response: Response, lang: LangQuery = None, accept_language: AcceptLanguage = None
) -> LevelsOut:
    """Return the plain-language levels (heat index, Thom discomfort, EFFIS fire weather, EEA
    air quality): each level's name and one sentence of advice for a resident, in the requested
    language. These are Meltemi's levels, not official warnings (``official_warnings``)."""
    language = i18n.negotiate(lang, accept_language)
    _language_headers(response, language)
    return _LEVELS[language]
