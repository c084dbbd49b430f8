"""Heat-stress indices (sensors.heat) against published vectors and an independent implementation.

- ``tests/data/comfort_ts_discomfort_index.json`` and ``comfort_ts_utci.json``: copied unchanged
  (after a source line) from FedericoTartarini/validation-data-comfort-models at the commit
  named in their first line (MIT): the validation tables of pythermalcomfort, jsthermalcomfort
  and the R comf package, with their own tolerance (0.1).
- UTCI over a grid against ECMWF's thermofeel 2.3.0 (``calculate_utci``, its own transcription
  of the 210 coefficients and of Hardy's saturation pressure). Both follow UTCI_a002.f90, so
  they must agree to rounding (1e-9 °C). pythermalcomfort differs from both by up to ~0.07 °C
  (its saturation pressure uses log1p), which is why the vectors carry a 0.1 tolerance; it is
  not installed because it pulls numba, llvmlite and scipy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import thermofeel

from sensors.heat import (
    DI_CLASS_LABELS,
    UTCI_CATEGORY_LABELS,
    UTCI_SHADE_LABEL,
    discomfort_class,
    discomfort_index,
    saturation_vapour_pressure_hpa,
    utci,
    utci_category,
    utci_in_shade,
    utci_in_shade_value,
)

DATA = Path(__file__).parent / "data"


def _vectors(name: str) -> dict[str, Any]:
    with (DATA / f"comfort_{name}.json").open() as fh:
        source = fh.readline()
        assert source.startswith("# source: FedericoTartarini/validation-data-comfort-models")
        loaded: dict[str, Any] = json.loads(fh.read())
    return loaded


def _cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Flatten the file's entries (scalars or lists) into one (inputs, outputs) per case."""
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for entry in _vectors(name)["data"]:
        inputs, outputs = entry["inputs"], entry["outputs"]
        lengths = {len(v) for v in (*inputs.values(), *outputs.values()) if isinstance(v, list)}
        n = lengths.pop() if lengths else 1
        assert not lengths, entry
        for i in range(n):
            pick = {k: v[i] if isinstance(v, list) else v for k, v in inputs.items()}
            want = {k: v[i] if isinstance(v, list) else v for k, v in outputs.items()}
            cases.append((pick, want))
    return cases


# --- Thom discomfort index --------------------------------------------------------------------


def test_discomfort_index_vectors() -> None:
    tolerance = _vectors("ts_discomfort_index")["tolerance"]["di"]
    assert tolerance == 0.1
    cases = _cases("ts_discomfort_index")
    assert len(cases) == 16
    worst = 0.0
    for inputs, want in cases:
        di = float(discomfort_index(inputs["tdb"], inputs["rh"]))
        worst = max(worst, abs(di - want["di"]))
        assert di == pytest.approx(want["di"], abs=tolerance), inputs
        got_class = discomfort_class(di)
        assert got_class is not None
        assert DI_CLASS_LABELS[got_class] == want["discomfort_condition"], inputs
    assert worst < 0.05  # the file rounds to one decimal


@pytest.mark.parametrize(
    ("di", "expected"),
    [
        pytest.param(-5.0, "no_discomfort", id="cold"),
        pytest.param(np.nextafter(21.0, 0.0), "no_discomfort", id="below-21"),
        pytest.param(21.0, "under_half_discomfort", id="21"),
        pytest.param(np.nextafter(24.0, 0.0), "under_half_discomfort", id="below-24"),
        pytest.param(24.0, "over_half_discomfort", id="24"),
        pytest.param(np.nextafter(27.0, 0.0), "over_half_discomfort", id="below-27"),
        pytest.param(27.0, "most_discomfort", id="27"),
        pytest.param(np.nextafter(29.0, 0.0), "most_discomfort", id="below-29"),
        pytest.param(29.0, "severe_stress", id="29"),
        pytest.param(np.nextafter(32.0, 0.0), "severe_stress", id="below-32"),
        pytest.param(32.0, "medical_emergency", id="32"),
    ],
)
def test_discomfort_class_edges(di: float, expected: str) -> None:
    assert discomfort_class(float(di)) == expected


def test_discomfort_index_properties() -> None:
    t = np.array([10.0, 25.0, 40.0, math.nan])
    np.testing.assert_allclose(discomfort_index(t[:3], 100.0), t[:3])  # saturated: DI = T
    np.testing.assert_allclose(discomfort_index(14.5, np.array([0.0, 50.0])), [14.5, 14.5])
    assert math.isnan(float(discomfort_index(t, 50.0)[3]))
    assert discomfort_class(math.nan) is None


# --- UTCI -------------------------------------------------------------------------------------


def _si(inputs: dict[str, Any]) -> tuple[float, float, float, float]:
    tdb, tr, v, rh = (float(inputs[k]) for k in ("tdb", "tr", "v", "rh"))
    if inputs.get("units", "si") == "ip":  # °F and ft/s in, °F out
        return (tdb - 32.0) * 5.0 / 9.0, (tr - 32.0) * 5.0 / 9.0, v * 0.3048, rh
    return tdb, tr, v, rh


def test_utci_vectors() -> None:
    tolerance = _vectors("ts_utci")["tolerance"]["utci"]
    assert tolerance == 0.1
    cases = _cases("ts_utci")
    assert len(cases) == 21
    n_none = 0
    for inputs, want in cases:
        ta, tr, v, rh = _si(inputs)
        got = float(utci(ta, tr, v, rh))
        if want["utci"] is None:
            n_none += 1
            assert math.isnan(got), inputs
            continue
        if inputs.get("units") == "ip":
            got = got * 9.0 / 5.0 + 32.0
        assert got == pytest.approx(want["utci"], abs=tolerance), inputs
        if "stress_category" in want:
            category = utci_category(got)
            assert category is not None
            assert UTCI_CATEGORY_LABELS[category] == want["stress_category"], inputs
    assert n_none == 4  # Ta 51 °C and calm air (0 m/s), each listed twice


def test_utci_in_shade_matches_thermofeel_over_a_grid() -> None:
    ta, rh, va = (
        g.ravel()
        for g in np.meshgrid(
            np.arange(-49.5, 50.0, 0.5),
            np.arange(0.0, 101.0, 5.0),
            np.arange(0.5, 17.01, 0.5),
            indexing="ij",
        )
    )
    assert ta.size == 199 * 21 * 34
    ours = utci_in_shade(ta, rh, va)
    assert not np.any(np.isnan(ours))
    tk = ta + 273.15
    e_hpa = thermofeel.calculate_saturation_vapour_pressure(tk) * rh / 100.0
    theirs = thermofeel.calculate_utci(tk, va, tk, ehPa=e_hpa) - 273.15
    np.testing.assert_allclose(ours, theirs, rtol=0.0, atol=1e-9)


def test_utci_with_radiation_matches_thermofeel() -> None:
    """The full polynomial (Tmrt != Ta) over a coarser 4-D grid inside the validity ranges."""
    ta, dt_mrt, va, rh = (
        g.ravel()
        for g in np.meshgrid(
            np.arange(-45.0, 50.0, 5.0),
            np.arange(-25.0, 70.0, 5.0),
            np.array([0.5, 1.0, 3.0, 7.0, 12.0, 17.0]),
            np.array([5.0, 40.0, 80.0, 100.0]),
            indexing="ij",
        )
    )
    ours = utci(ta, ta + dt_mrt, va, rh)
    tk = ta + 273.15
    e_hpa = thermofeel.calculate_saturation_vapour_pressure(tk) * rh / 100.0
    theirs = thermofeel.calculate_utci(tk, va, tk + dt_mrt, ehPa=e_hpa) - 273.15
    np.testing.assert_allclose(ours, theirs, rtol=0.0, atol=1e-8)


def test_saturation_vapour_pressure_matches_thermofeel() -> None:
    t = np.linspace(-50.0, 50.0, 101)
    expected = thermofeel.calculate_saturation_vapour_pressure(t + 273.15)
    np.testing.assert_allclose(saturation_vapour_pressure_hpa(t), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("ta", "tmrt", "va", "valid"),
    [
        pytest.param(49.9, 49.9, 1.0, True, id="ta-49.9"),
        pytest.param(50.0, 50.0, 1.0, False, id="ta-50-excluded"),
        pytest.param(-49.9, -49.9, 1.0, True, id="ta-minus-49.9"),
        pytest.param(-50.0, -50.0, 1.0, False, id="ta-minus-50-excluded"),
        pytest.param(20.0, 20.0, 0.5, True, id="wind-0.5-included"),
        pytest.param(20.0, 20.0, np.nextafter(0.5, 0.0), False, id="wind-below-0.5"),
        pytest.param(20.0, 20.0, 17.0, True, id="wind-17-included"),
        pytest.param(20.0, 20.0, np.nextafter(17.0, 18.0), False, id="wind-above-17"),
        pytest.param(20.0, 89.9, 1.0, True, id="dtmrt-69.9"),
        pytest.param(20.0, 90.0, 1.0, False, id="dtmrt-70-excluded"),
        pytest.param(20.0, -9.9, 1.0, True, id="dtmrt-minus-29.9"),
        pytest.param(20.0, -10.0, 1.0, False, id="dtmrt-minus-30-excluded"),
        pytest.param(math.nan, 20.0, 1.0, False, id="nan-ta"),
    ],
)
def test_utci_validity_ranges(ta: float, tmrt: float, va: float, valid: bool) -> None:
    got = float(utci(ta, tmrt, float(va), 50.0))
    assert math.isfinite(got) is valid


def test_utci_in_shade_scalar_is_none_outside_validity() -> None:
    assert utci_in_shade_value(30.0, 40.0, 0.3) is None
    assert utci_in_shade_value(51.0, 10.0, 2.0) is None
    value = utci_in_shade_value(30.0, 40.0, 2.0)
    assert value is not None
    assert value == float(utci(30.0, 30.0, 2.0, 40.0))
    assert "Tmrt = Ta" in UTCI_SHADE_LABEL


def test_utci_broadcasts_and_propagates_nan() -> None:
    out = utci_in_shade(np.array([20.0, math.nan, 30.0]), 50.0, np.array([1.0, 1.0, math.nan]))
    assert out.shape == (3,)
    assert math.isfinite(out[0])
    assert math.isnan(out[1])
    assert math.isnan(out[2])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(-40.0, "extreme_cold", id="-40"),
        pytest.param(np.nextafter(-40.0, 0.0), "very_strong_cold", id="above--40"),
        pytest.param(-27.0, "very_strong_cold", id="-27"),
        pytest.param(np.nextafter(-27.0, 0.0), "strong_cold", id="above--27"),
        pytest.param(-13.0, "strong_cold", id="-13"),
        pytest.param(np.nextafter(-13.0, 0.0), "moderate_cold", id="above--13"),
        pytest.param(0.0, "moderate_cold", id="0"),
        pytest.param(np.nextafter(0.0, 1.0), "slight_cold", id="above-0"),
        pytest.param(9.0, "slight_cold", id="9"),
        pytest.param(np.nextafter(9.0, 10.0), "no_thermal_stress", id="above-9"),
        pytest.param(26.0, "no_thermal_stress", id="26"),
        pytest.param(np.nextafter(26.0, 27.0), "moderate_heat", id="above-26"),
        pytest.param(32.0, "moderate_heat", id="32"),
        pytest.param(np.nextafter(32.0, 33.0), "strong_heat", id="above-32"),
        pytest.param(38.0, "strong_heat", id="38"),
        pytest.param(np.nextafter(38.0, 39.0), "very_strong_heat", id="above-38"),
        pytest.param(46.0, "very_strong_heat", id="46"),
        pytest.param(np.nextafter(46.0, 47.0), "extreme_heat", id="above-46"),
    ],
)
def test_utci_category_edges(value: float, expected: str) -> None:
    assert utci_category(float(value)) == expected


def test_utci_category_nan() -> None:
    assert utci_category(math.nan) is None
