"""Heat-stress indices from air temperature, humidity and wind: Thom's DI and UTCI in the shade.

- Thom discomfort index (Thom 1959, in the °C/RH form of Giles et al. 1990, as used in Greece and
  by pythermalcomfort ``discomfort_index``): DI = T - 0.55 (1 - 0.01 RH)(T - 14.5), with six
  classes, lower bound inclusive (``discomfort_class``).
- UTCI, the Universal Thermal Climate Index, by the 6th-order polynomial of Bröde et al. (2012,
  "Deriving the operational procedure for the UTCI", Int. J. Biometeorol. 56, 481-494), the
  ``UTCI_approx`` of the reference program UTCI_a002.f90 (utci.org, P. Bröde 2009), with its
  saturation vapour pressure over water (Hardy 1998, ITS-90). Stations measure no mean radiant
  temperature, so Meltemi's product is "UTCI in the shade": Tmrt = Ta, labelled so
  (``UTCI_SHADE_LABEL``), never presented as the sunlit UTCI. Outside the polynomial's
  validity the value is NaN (None for the scalar helper), never an extrapolation.

Neither is an official Greek heat warning: no official Greek heat index is published as a
formula, so every value is labelled with its source.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayIn = FloatArray | float

DiscomfortClass = Literal[
    "no_discomfort",
    "under_half_discomfort",
    "over_half_discomfort",
    "most_discomfort",
    "severe_stress",
    "medical_emergency",
]
# Thom's classes as pythermalcomfort labels them (validation-data-comfort-models uses the same
# strings); lower bound inclusive.
DI_CLASS_LOWER_BOUNDS: Final[tuple[tuple[float, DiscomfortClass], ...]] = (
    (32.0, "medical_emergency"),
    (29.0, "severe_stress"),
    (27.0, "most_discomfort"),
    (24.0, "over_half_discomfort"),
    (21.0, "under_half_discomfort"),
)
DI_CLASS_LABELS: Final[dict[DiscomfortClass, str]] = {
    "no_discomfort": "No discomfort",
    "under_half_discomfort": "Less than 50% feels discomfort",
    "over_half_discomfort": "More than 50% feels discomfort",
    "most_discomfort": "Most of the population feels discomfort",
    "severe_stress": "Everyone feels severe stress",
    "medical_emergency": "State of medical emergency",
}
DI_SOURCE: Final = "Thom discomfort index (Thom 1959; Giles et al. 1990 °C/RH form)"


def discomfort_index(air_temperature: ArrayIn, relative_humidity: ArrayIn) -> FloatArray:
    """Return Thom's discomfort index (°C): T - 0.55 (1 - 0.01 RH)(T - 14.5); NaN in, NaN out."""
    t = np.asarray(air_temperature, dtype=np.float64)
    rh = np.asarray(relative_humidity, dtype=np.float64)
    result: FloatArray = t - 0.55 * (1.0 - 0.01 * rh) * (t - 14.5)
    return result


def discomfort_class(di: float) -> DiscomfortClass | None:
    """Return the Thom class of a DI value (lower bound inclusive); None if NaN."""
    if math.isnan(di):
        return None
    for lower, name in DI_CLASS_LOWER_BOUNDS:
        if di >= lower:
            return name
    return "no_discomfort"


# --- UTCI -------------------------------------------------------------------------------------

UTCI_SHADE_LABEL: Final = "UTCI in the shade (Tmrt = Ta)"
UTCI_SOURCE: Final = (
    "Bröde et al. (2012) UTCI polynomial (UTCI_a002.f90), evaluated with mean radiant "
    "temperature equal to air temperature: UTCI in the shade, not in the sun"
)
# Validity of the polynomial, as the reference program states it (UTCI_a002.f90 and Bröde et al.
# 2012): air temperature -50..50 °C, Tmrt - Ta -30..70 °C, 10 m wind 0.5..17 m/s. Outside, the
# regression extrapolates badly, so no value is given. Ta and Tmrt - Ta bounds are exclusive
# and the wind bounds inclusive, as REFERENCES.md writes them.
UTCI_TA_RANGE_C: Final = (-50.0, 50.0)
UTCI_DTMRT_RANGE_C: Final = (-30.0, 70.0)
UTCI_WIND_RANGE_MS: Final = (0.5, 17.0)

# Hardy (1998) ITS-90 saturation vapour pressure over water, the es() of UTCI_a002.f90:
# ln(es / Pa) = sum g_i T^(i-2) for i = 0..6, plus g_7 ln T, T in K.
_HARDY_G: Final = (
    -2.8365744e3,
    -6.028076559e3,
    1.954263612e1,
    -2.737830188e-2,
    1.6261698e-5,
    7.0229056e-10,
    -1.8680009e-13,
)
_HARDY_LN: Final = 2.7150305

# The 210 coefficients of UTCI_approx (Bröde et al. 2012, electronic supplementary material;
# UTCI_a002.f90), in the reference program's order: Pa (kPa) outermost, then Tmrt - Ta, then the
# 10 m wind va, then Ta innermost, every exponent combination of total degree <= 6. Lines
# starting with "#" are comments.
_UTCI_COEFFICIENTS_TEXT: Final = """
# Pa^0 dTmrt^0, then va^j for j = 0..6, each with Ta^i for i = 0..6-j
6.07562052e-01 -2.27712343e-02 8.06470249e-04 -1.54271372e-04 -3.24651735e-06 7.32602852e-08
1.35959073e-09 -2.25836520e+00 8.80326035e-02 2.16844454e-03 -1.53347087e-05 -5.72983704e-07
-2.55090145e-09 -7.51269505e-01 -4.08350271e-03 -5.21670675e-05 1.94544667e-06 1.14099531e-08
1.58137256e-01 -6.57263143e-05 2.22697524e-07 -4.16117031e-08 -1.27762753e-02 9.66891875e-06
2.52785852e-09 4.56306672e-04 -1.74202546e-07 -5.91491269e-06
# Pa^0 dTmrt^1, then va^j for j = 0..5, each with Ta^i for i = 0..5-j
3.98374029e-01 1.83945314e-04 -1.73754510e-04 -7.60781159e-07 3.77830287e-08 5.43079673e-10
-2.00518269e-02 8.92859837e-04 3.45433048e-06 -3.77925774e-07 -1.69699377e-09 1.69992415e-04
-4.99204314e-05 2.47417178e-07 1.07596466e-08 8.49242932e-05 1.35191328e-06 -6.21531254e-09
-4.99410301e-06 -1.89489258e-08 8.15300114e-08
# Pa^0 dTmrt^2, then va^j for j = 0..4, each with Ta^i for i = 0..4-j
7.55043090e-04 -5.65095215e-05 -4.52166564e-07 2.46688878e-08 2.42674348e-10 1.54547250e-04
5.24110970e-06 -8.75874982e-08 -1.50743064e-09 -1.56236307e-05 -1.33895614e-07 2.49709824e-09
6.51711721e-07 1.94960053e-09 -1.00361113e-08
# Pa^0 dTmrt^3, then va^j for j = 0..3, each with Ta^i for i = 0..3-j
-1.21206673e-05 -2.18203660e-07 7.51269482e-09 9.79063848e-11 1.25006734e-06 -1.81584736e-09
-3.52197671e-10 -3.36514630e-08 1.35908359e-10 4.17032620e-10
# Pa^0 dTmrt^4, then va^j for j = 0..2, each with Ta^i for i = 0..2-j
-1.30369025e-09 4.13908461e-10 9.22652254e-12 -5.08220384e-09 -2.24730961e-11 1.17139133e-10
# Pa^0 dTmrt^5, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
6.62154879e-10 4.03863260e-13 1.95087203e-12
# Pa^0 dTmrt^6, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
-4.73602469e-12
# Pa^1 dTmrt^0, then va^j for j = 0..5, each with Ta^i for i = 0..5-j
5.12733497e+00 -3.12788561e-01 -1.96701861e-02 9.99690870e-04 9.51738512e-06 -4.66426341e-07
5.48050612e-01 -3.30552823e-03 -1.64119440e-03 -5.16670694e-06 9.52692432e-07 -4.29223622e-02
5.00845667e-03 1.00601257e-06 -1.81748644e-06 -1.25813502e-03 -1.79330391e-04 2.34994441e-06
1.29735808e-04 1.29064870e-06 -2.28558686e-06
# Pa^1 dTmrt^1, then va^j for j = 0..4, each with Ta^i for i = 0..4-j
-3.69476348e-02 1.62325322e-03 -3.14279680e-05 2.59835559e-06 -4.77136523e-08 8.64203390e-03
-6.87405181e-04 -9.13863872e-06 5.15916806e-07 -3.59217476e-05 3.28696511e-05 -7.10542454e-07
-1.24382300e-05 -7.38584400e-09 2.20609296e-07
# Pa^1 dTmrt^2, then va^j for j = 0..3, each with Ta^i for i = 0..3-j
-7.32469180e-04 -1.87381964e-05 4.80925239e-06 -8.75492040e-08 2.77862930e-05 -5.06004592e-06
1.14325367e-07 2.53016723e-06 -1.72857035e-08 -3.95079398e-08
# Pa^1 dTmrt^3, then va^j for j = 0..2, each with Ta^i for i = 0..2-j
-3.59413173e-07 7.04388046e-07 -1.89309167e-08 -4.79768731e-07 7.96079978e-09 1.62897058e-09
# Pa^1 dTmrt^4, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
3.94367674e-08 -1.18566247e-09 3.34678041e-10
# Pa^1 dTmrt^5, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
-1.15606447e-10
# Pa^2 dTmrt^0, then va^j for j = 0..4, each with Ta^i for i = 0..4-j
-2.80626406e+00 5.48712484e-01 -3.99428410e-03 -9.54009191e-04 1.93090978e-05 -3.08806365e-01
1.16952364e-02 4.95271903e-04 -1.90710882e-05 2.10787756e-03 -6.98445738e-04 2.30109073e-05
4.17856590e-04 -1.27043871e-05 -3.04620472e-06
# Pa^2 dTmrt^1, then va^j for j = 0..3, each with Ta^i for i = 0..3-j
5.14507424e-02 -4.32510997e-03 8.99281156e-05 -7.14663943e-07 -2.66016305e-04 2.63789586e-04
-7.01199003e-06 -1.06823306e-04 3.61341136e-06 2.29748967e-07
# Pa^2 dTmrt^2, then va^j for j = 0..2, each with Ta^i for i = 0..2-j
3.04788893e-04 -6.42070836e-05 1.16257971e-06 7.68023384e-06 -5.47446896e-07 -3.59937910e-08
# Pa^2 dTmrt^3, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
-4.36497725e-06 1.68737969e-07 2.67489271e-08
# Pa^2 dTmrt^4, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
3.23926897e-09
# Pa^3 dTmrt^0, then va^j for j = 0..3, each with Ta^i for i = 0..3-j
-3.53874123e-02 -2.21201190e-01 1.55126038e-02 -2.63917279e-04 4.53433455e-02 -4.32943862e-03
1.45389826e-04 2.17508610e-04 -6.66724702e-05 3.33217140e-05
# Pa^3 dTmrt^1, then va^j for j = 0..2, each with Ta^i for i = 0..2-j
-2.26921615e-03 3.80261982e-04 -5.45314314e-09 -7.96355448e-04 2.53458034e-05 -6.31223658e-06
# Pa^3 dTmrt^2, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
3.02122035e-04 -4.77403547e-06 1.73825715e-06
# Pa^3 dTmrt^3, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
-4.09087898e-07
# Pa^4 dTmrt^0, then va^j for j = 0..2, each with Ta^i for i = 0..2-j
6.14155345e-01 -6.16755931e-02 1.33374846e-03 3.55375387e-03 -5.13027851e-04 1.02449757e-04
# Pa^4 dTmrt^1, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
-1.48526421e-03 -4.11469183e-05 -6.80434415e-06
# Pa^4 dTmrt^2, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
-9.77675906e-06
# Pa^5 dTmrt^0, then va^j for j = 0..1, each with Ta^i for i = 0..1-j
8.82773108e-02 -3.01859306e-03 1.04452989e-03
# Pa^5 dTmrt^1, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
2.47090539e-04
# Pa^6 dTmrt^0, then va^j for j = 0..0, each with Ta^i for i = 0..0-j
1.48348065e-03
"""


def _utci_terms() -> tuple[FloatArray, npt.NDArray[np.intp]]:
    coefficients = np.array(
        [
            float(word)
            for line in _UTCI_COEFFICIENTS_TEXT.splitlines()
            if not line.startswith("#")
            for word in line.split()
        ]
    )
    # Exponents (Ta, va, Tmrt - Ta, Pa) in the reference program's order.
    exponents = np.array(
        [
            (i, j, k, pa)
            for pa in range(7)
            for k in range(7 - pa)
            for j in range(7 - pa - k)
            for i in range(7 - pa - k - j)
        ],
        dtype=np.intp,
    )
    if coefficients.shape != (210,) or exponents.shape != (210, 4):
        raise RuntimeError("the UTCI coefficient table must have 210 terms")
    return coefficients, exponents


_UTCI_COEFFICIENTS, _UTCI_EXPONENTS = _utci_terms()


def saturation_vapour_pressure_hpa(air_temperature: ArrayIn) -> FloatArray:
    """Return the saturation vapour pressure over water (hPa), Hardy (1998) as UTCI_a002.f90."""
    tk = np.asarray(air_temperature, dtype=np.float64) + 273.15
    with np.errstate(all="ignore"):
        ln_es = _HARDY_LN * np.log(tk)
        for i, g in enumerate(_HARDY_G):
            ln_es = ln_es + g * tk ** float(i - 2)
        result: FloatArray = np.exp(ln_es) * 0.01
    return result


def utci(
    air_temperature: ArrayIn,
    mean_radiant_temperature: ArrayIn,
    wind_speed: ArrayIn,
    relative_humidity: ArrayIn,
) -> FloatArray:
    """Return the UTCI (°C) by Bröde et al.'s (2012) polynomial; NaN outside its validity.

    ``wind_speed`` is the 10 m wind in m/s. Vapour pressure is RH times Hardy's saturation
    pressure, as in the reference program.
    """
    ta, tmrt, va, rh = np.broadcast_arrays(
        np.asarray(air_temperature, dtype=np.float64),
        np.asarray(mean_radiant_temperature, dtype=np.float64),
        np.asarray(wind_speed, dtype=np.float64),
        np.asarray(relative_humidity, dtype=np.float64),
    )
    d_tmrt = tmrt - ta
    pa = saturation_vapour_pressure_hpa(ta) * rh / 100.0 / 10.0  # kPa, as the polynomial wants
    with np.errstate(all="ignore"):
        valid = (
            (ta > UTCI_TA_RANGE_C[0])
            & (ta < UTCI_TA_RANGE_C[1])
            & (d_tmrt > UTCI_DTMRT_RANGE_C[0])
            & (d_tmrt < UTCI_DTMRT_RANGE_C[1])
            & (va >= UTCI_WIND_RANGE_MS[0])
            & (va <= UTCI_WIND_RANGE_MS[1])
            & (rh >= 0.0)
            & (rh <= 100.0)
        )
        powers = [np.stack([x**n for n in range(7)]) for x in (ta, va, d_tmrt, pa)]
        total = np.zeros(ta.shape, dtype=np.float64)
        for coefficient, (i, j, k, m) in zip(_UTCI_COEFFICIENTS, _UTCI_EXPONENTS, strict=True):
            total += coefficient * powers[0][i] * powers[1][j] * powers[2][k] * powers[3][m]
        result: FloatArray = np.where(valid, ta + total, np.nan)
    return result


def utci_in_shade(
    air_temperature: ArrayIn, relative_humidity: ArrayIn, wind_speed: ArrayIn
) -> FloatArray:
    """Return the UTCI in the shade (°C): Tmrt = Ta; NaN outside the polynomial's validity."""
    return utci(air_temperature, air_temperature, wind_speed, relative_humidity)


def utci_in_shade_value(
    air_temperature: float, relative_humidity: float, wind_speed: float
) -> float | None:
    """Return one UTCI-in-the-shade value (°C), or None outside the polynomial's validity."""
    value = float(utci_in_shade(air_temperature, relative_humidity, wind_speed))
    return None if math.isnan(value) else value


UtciCategory = Literal[
    "extreme_cold",
    "very_strong_cold",
    "strong_cold",
    "moderate_cold",
    "slight_cold",
    "no_thermal_stress",
    "moderate_heat",
    "strong_heat",
    "very_strong_heat",
    "extreme_heat",
]
# UTCI assessment scale (Bröde et al. 2012, Table 1; Błażejczyk et al. 2013): each category's
# upper bound is inclusive, so "> 46" is extreme heat and 46.0 itself very strong heat; the same
# convention as pythermalcomfort (numpy.digitize(..., right=True)).
UTCI_CATEGORY_UPPER_BOUNDS: Final[tuple[tuple[float, UtciCategory], ...]] = (
    (-40.0, "extreme_cold"),
    (-27.0, "very_strong_cold"),
    (-13.0, "strong_cold"),
    (0.0, "moderate_cold"),
    (9.0, "slight_cold"),
    (26.0, "no_thermal_stress"),
    (32.0, "moderate_heat"),
    (38.0, "strong_heat"),
    (46.0, "very_strong_heat"),
)
UTCI_CATEGORY_LABELS: Final[dict[UtciCategory, str]] = {
    "extreme_cold": "extreme cold stress",
    "very_strong_cold": "very strong cold stress",
    "strong_cold": "strong cold stress",
    "moderate_cold": "moderate cold stress",
    "slight_cold": "slight cold stress",
    "no_thermal_stress": "no thermal stress",
    "moderate_heat": "moderate heat stress",
    "strong_heat": "strong heat stress",
    "very_strong_heat": "very strong heat stress",
    "extreme_heat": "extreme heat stress",
}


def utci_category(value: float) -> UtciCategory | None:
    """Return the UTCI stress category of a value (upper bound inclusive); None if NaN."""
    if math.isnan(value):
        return None
    for upper, name in UTCI_CATEGORY_UPPER_BOUNDS:
        if value <= upper:
            return name
    return "extreme_heat"
