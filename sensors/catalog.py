"""The parameter catalogue of CONTRACT §4: ids, units, physical ranges, aggregations, QC limits.

Plausibility limits follow WMO guidance for automatic weather stations:
WMO-No. 8 (Guide to Instruments and Methods of Observation, 2018/2021 ed.), Vol. I ch. 1 Annex 1.A
and WMO-No. 1269 / the WMO "Guidelines on surface station data quality control" (2021) §6.3
(step and persistence tests), with the step limits for one-minute data quoted there
(air temperature 3 °C, relative humidity 10 %, pressure 0.5 hPa, wind speed 20 m/s per minute;
persistence: 60 min for temperature, humidity, pressure; 6 h of unchanged non-zero wind speed).
Where WMO gives no figure (particulate matter, UV), the source is named on the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

Aggregation = Literal["mean", "min", "max", "sum", "count"]
AGGREGATIONS: Final[tuple[Aggregation, ...]] = get_args(Aggregation)


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One catalogue entry: what a parameter means and how it is judged and aggregated."""

    id: str
    name: str
    unit: str
    min: float
    max: float
    default_agg: Aggregation
    # Largest plausible change per minute between two consecutive values (step test); None: no test.
    max_step_per_min: float | None
    # Longest plausible run of an unchanged value, in minutes (persistence test); None: no test.
    persistence_min: float | None
    # Values for which a long flat line is physically normal (calm wind, no rain, night radiation).
    persistence_exempt: tuple[float, ...] = ()
    # Directions are circular: their mean is the mean of unit vectors, not of angles.
    circular: bool = False
    source: str = ""


_WMO_QC = "WMO Guidelines on surface station data quality control (2021) §6.3"
_PM_SOURCE = "EN 16450:2017 (automated PM sensors); step 500 µg/m³ per minute"


def _particulate(parameter_id: str, name: str) -> ParameterSpec:
    """Return the entry of a particulate-matter fraction (they share unit, range and limits)."""
    return ParameterSpec(
        parameter_id, name, "µg/m³", 0, 2000, "mean", 500.0, 120.0, source=_PM_SOURCE
    )


PARAMETERS: Final[tuple[ParameterSpec, ...]] = (
    ParameterSpec(
        "air_temperature", "Air temperature", "°C", -50, 60, "mean", 3.0, 60.0, source=_WMO_QC
    ),
    ParameterSpec(
        "relative_humidity",
        "Relative humidity",
        "%",
        0,
        100,
        "mean",
        10.0,
        60.0,
        persistence_exempt=(100.0,),
        source=_WMO_QC,
    ),
    ParameterSpec(
        "air_pressure",
        "Air pressure (station level)",
        "hPa",
        500,
        1100,
        "mean",
        0.5,
        60.0,
        source=_WMO_QC,
    ),
    ParameterSpec(
        "wind_speed",
        "Wind speed",
        "m/s",
        0,
        75,
        "mean",
        20.0,
        360.0,
        persistence_exempt=(0.0,),
        source=_WMO_QC,
    ),
    ParameterSpec(
        "wind_gust",
        "Wind gust",
        "m/s",
        0,
        100,
        "max",
        30.0,
        360.0,
        persistence_exempt=(0.0,),
        source=_WMO_QC + " (gust: 1.5x the speed limit)",
    ),
    ParameterSpec(
        "wind_direction",
        "Wind direction",
        "°",
        0,
        360,
        "mean",
        None,
        360.0,
        circular=True,
        source=_WMO_QC + " (direction: persistence only)",
    ),
    ParameterSpec(
        "precipitation",
        "Precipitation",
        "mm",
        0,
        400,
        "sum",
        None,
        None,
        source="WMO-No. 8 Vol. I ch. 6; no step or persistence test for accumulations",
    ),
    ParameterSpec(
        "solar_radiation",
        "Global solar radiation",
        "W/m²",
        0,
        1600,
        "mean",
        800.0,
        None,
        source="WMO-No. 8 Vol. I ch. 7; step 800 W/m² per minute (cloud edges)",
    ),
    ParameterSpec(
        "uv_index",
        "UV index",
        "1",
        0,
        25,
        "mean",
        5.0,
        None,
        source="WHO Global Solar UV Index guide (2002); step 5 per minute",
    ),
    _particulate("pm1", "PM1"),
    _particulate("pm2_5", "PM2.5"),
    _particulate("pm10", "PM10"),
)

CATALOG: Final[dict[str, ParameterSpec]] = {spec.id: spec for spec in PARAMETERS}
PARAMETER_IDS: Final[frozenset[str]] = frozenset(CATALOG)


def get_parameter(parameter: str) -> ParameterSpec | None:
    """Return the catalogue entry for ``parameter``, or None when it is unknown."""
    return CATALOG.get(parameter)
