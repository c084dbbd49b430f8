"""The alert vocabulary shared by the alert engine (``alerts/``) and the API (``api/``).

The engine turns each transition of a rule's state into one ``AlertMessage``: the first is a
CAP ``Alert``, a change of level an ``Update``, the return to quiet an ``Update`` with
responseType ``AllClear``, and a rule withdrawn while active a ``Cancel``. Messages of one
episode share an ``episode`` id and reference every earlier message of it (CAP 1.2 §3.2.1
``references``).

Stored schema: measurement ``alert_messages``, tags ``station`` and ``rule``, timestamp = the
transition's time (whole seconds), string field ``doc`` = the message as JSON, plus ``level``
and ``msg_type`` for filtering. The point key (rule, station, time) is deterministic, so a
replay after a crash overwrites the same points with the same documents.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGES: Final = "alert_messages"
RULE_TAG: Final = "rule"
DOC_FIELD: Final = "doc"
# MQTT: the engine publishes every message here (QoS 1); only its broker role may write it.
ALERTS_TOPIC_PREFIX: Final = "meltemi/alerts/"
ALERTS_FILTER: Final = "meltemi/alerts/+"

RULE_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# CAP 1.2 §3.2.1: identifier and sender must not contain spaces, commas or < and &.
CAP_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._:@-]{1,200}")

MsgType = Literal["Alert", "Update", "Cancel"]
Severity = Literal["Minor", "Moderate", "Severe", "Extreme"]
Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
    "CBRNE", "Other",
]  # fmt: skip
AreaKind = Literal["station", "municipality", "network"]
LANGUAGES: Final = ("el", "en")  # every text of a rule is given in these, Greek first
CAP_LANGUAGE: Final[dict[str, str]] = {"el": "el-GR", "en": "en-GB"}

# MeteoAlarm's awareness levels (the `awareness_level` CAP parameter) by CAP severity.
AWARENESS_LEVEL: Final[dict[Severity, str]] = {
    "Minor": "1; green; Minor",
    "Moderate": "2; yellow; Moderate",
    "Severe": "3; orange; Severe",
    "Extreme": "4; red; Extreme",
}


def alerts_topic(station_or_area: str) -> str:
    """Return the topic on which the engine publishes the messages of a station or area."""
    return ALERTS_TOPIC_PREFIX + station_or_area


class Texts(BaseModel):
    """One text in every language the alerts are published in (Greek and English)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    el: str = Field(min_length=1, max_length=2000)
    en: str = Field(min_length=1, max_length=2000)

    def get(self, language: str) -> str:
        """Return the text in ``language`` (``el`` or ``en``)."""
        return self.el if language == "el" else self.en


class AlertArea(BaseModel):
    """Where an alert applies: a station's point, a municipality or the whole network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AreaKind
    key: str  # station id, municipality name, or "network"
    description: Texts
    # CAP circles "lat,lon radius_km" around the stations of the area (WGS 84).
    circles: tuple[str, ...] = ()


class AlertMessage(BaseModel):
    """One CAP message of an alert episode, as stored, published and served."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    identifier: str = Field(pattern="^" + CAP_TOKEN_RE.pattern + "$")
    episode: str = Field(pattern="^" + CAP_TOKEN_RE.pattern + "$")
    sequence: int = Field(ge=0)  # 0 for the Alert, then 1, 2, ... in the episode
    rule: str = Field(pattern="^" + RULE_ID_RE.pattern + "$")
    station: str  # the station whose readings made the transition (or the area key)
    area: AlertArea
    sent: dt.datetime  # the transition's time (UTC, whole seconds)
    msg_type: MsgType
    all_clear: bool = False  # an Update with responseType AllClear ends the episode
    active: bool  # True while the episode goes on after this message
    level: int = Field(ge=0)  # 0 after a clear; 1.. the rule's levels, lowest first
    level_name: str
    severity: Severity
    category: Category
    event: Texts
    headline: Texts
    description: Texts
    instruction: Texts | None = None
    awareness_type: str | None = None  # MeteoAlarm, e.g. "5; high-temperature"
    parameter: str  # what the rule watched, e.g. discomfort_index
    value: float | None = None  # the value at the transition (None for a silence)
    threshold: float | None = None
    references: tuple[str, ...] = ()  # identifiers of the earlier messages of the episode
    onset: dt.datetime  # the episode's start

    @property
    def ended(self) -> bool:
        """Return True when this message closes its episode (an all-clear or a cancel)."""
        return not self.active


def episode_id(rule: str, key: str, onset: dt.datetime) -> str:
    """Return the deterministic id of an episode: rule, station or area, onset epoch."""
    return f"meltemi.{rule}.{key}.{int(onset.timestamp())}"


def message_id(episode: str, sequence: int) -> str:
    """Return the CAP identifier of the ``sequence``-th message of an episode."""
    return f"{episode}.{sequence}"
