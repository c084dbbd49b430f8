"""MQTT topic names of CONTRACT §4 and the topic on which accepted readings are re-published."""

from __future__ import annotations

import re
from typing import Final, Literal, NewType

StationId = NewType("StationId", str)

STATION_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")  # CONTRACT §4, matched in full
TOPIC_PREFIX: Final = "stations/"
READINGS_FILTER: Final = "stations/+/readings"
STATUS_FILTER: Final = "stations/+/status"
# The ingester re-publishes every accepted reading here (QoS 0, the `latest` entry shape), so
# that the API's live stream shows only what was validated and stored.
ACCEPTED_PREFIX: Final = "meltemi/accepted/"
ACCEPTED_FILTER: Final = "meltemi/accepted/+"

# Mosquitto's own counters, published on $SYS every sys_interval (10 s by default): messages it
# dropped (a full session queue, max_queued_messages) and messages it holds. The ingester reads
# them so that a broker-side loss shows in /metrics and /health (issue 9).
SYS_DROPPED: Final = "$SYS/broker/publish/messages/dropped"
SYS_STORED: Final = "$SYS/broker/store/messages/count"
BROKER_SYS_TOPICS: Final = (SYS_DROPPED, SYS_STORED)

TopicKind = Literal["readings", "status"]


def is_station_id(value: str) -> bool:
    """Return True when ``value`` is a well-formed station id (CONTRACT §4 regex)."""
    return STATION_ID_RE.fullmatch(value) is not None


def readings_topic(station_id: str) -> str:
    """Return the topic a station publishes its readings on."""
    return f"{TOPIC_PREFIX}{station_id}/readings"


def status_topic(station_id: str) -> str:
    """Return the retained status topic of a station."""
    return f"{TOPIC_PREFIX}{station_id}/status"


def accepted_topic(station_id: str) -> str:
    """Return the topic on which the ingester re-publishes a station's accepted readings."""
    return f"{ACCEPTED_PREFIX}{station_id}"


def parse_station_topic(topic: str) -> tuple[StationId, TopicKind] | None:
    """Split ``stations/{id}/readings|status`` into (station_id, kind); None for any other shape.

    Exactly three levels and a well-formed id: ``stations/a/b/readings`` is refused
    (RELIABILITY §0.9, topic-shape spoofing).
    """
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "stations" or not is_station_id(parts[1]):
        return None
    if parts[2] == "readings":
        return StationId(parts[1]), "readings"
    if parts[2] == "status":
        return StationId(parts[1]), "status"
    return None
