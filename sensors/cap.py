"""CAP 1.2 documents of alert messages (OASIS Common Alerting Protocol v1.2).

Traps the schema enforces and this module honours (REFERENCES.md "Alerts"): every date-time is
``YYYY-MM-DDThh:mm:ss±hh:mm`` (no ``Z``, no fractions), written here in Greek local time with
its offset; elements come in schema order; ``references`` lists ``sender,identifier,sent`` of
each earlier message, space-separated; there is one ``info`` per language. Meltemi's alerts are
computed from its own stations: the texts say so, and they are never an official warning.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Final
from zoneinfo import ZoneInfo

from sensors.alerting import AWARENESS_LEVEL, CAP_LANGUAGE, LANGUAGES, AlertMessage

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
LOCAL_ZONE: Final = ZoneInfo("Europe/Athens")
# The Greek civil protection's own warnings and fire-risk map: where official warnings live.
OFFICIAL_WEB: Final = "https://civilprotection.gov.gr/"
NOT_OFFICIAL: Final = {
    "el": "Υπολογισμένο από τους σταθμούς Meltemi· δεν είναι επίσημη προειδοποίηση. "
    "Επίσημες προειδοποιήσεις: Γενική Γραμματεία Πολιτικής Προστασίας, civilprotection.gov.gr.",
    "en": "Computed from Meltemi's stations; not an official warning. "
    "Official warnings: Greek General Secretariat for Civil Protection, civilprotection.gov.gr.",
}
SENDER_NAME: Final = {"el": "Δίκτυο σταθμών Meltemi", "en": "Meltemi station network"}

ET.register_namespace("", CAP_NS)


def cap_time(ts: dt.datetime) -> str:
    """Return a CAP date-time: local Greek time, whole seconds, numeric offset (never ``Z``)."""
    if ts.tzinfo is None:
        raise ValueError("CAP times must be timezone-aware")
    return ts.astimezone(LOCAL_ZONE).replace(microsecond=0).isoformat()


def _sub(parent: ET.Element, name: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{name}")
    element.text = text
    return element


def _parameter(info: ET.Element, name: str, value: str) -> None:
    parameter = ET.SubElement(info, f"{{{CAP_NS}}}parameter")
    _sub(parameter, "valueName", name)
    _sub(parameter, "value", value)


def references_text(sender: str, earlier: Sequence[AlertMessage]) -> str:
    """Return the CAP ``references`` value: ``sender,identifier,sent`` of each earlier message."""
    return " ".join(f"{sender},{m.identifier},{cap_time(m.sent)}" for m in earlier)


def cap_document(
    message: AlertMessage, earlier: Sequence[AlertMessage], sender: str, web: str
) -> bytes:
    """Return the CAP 1.2 XML of ``message`` (``earlier``: the episode's previous messages)."""
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", message.identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(message.sent))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", message.msg_type)
    _sub(alert, "scope", "Public")
    if message.msg_type != "Alert":
        if not earlier:
            raise ValueError(f"{message.identifier}: an {message.msg_type} needs references")
        _sub(alert, "references", references_text(sender, earlier))
    for language in LANGUAGES:
        info = ET.SubElement(alert, f"{{{CAP_NS}}}info")
        _sub(info, "language", CAP_LANGUAGE[language])
        _sub(info, "category", message.category)
        _sub(info, "event", message.event.get(language))
        _sub(info, "responseType", "AllClear" if message.all_clear else "Monitor")
        _sub(info, "urgency", "Past" if message.ended else "Immediate")
        _sub(info, "severity", message.severity)
        _sub(info, "certainty", "Observed")
        _sub(info, "onset", cap_time(message.onset))
        _sub(info, "senderName", SENDER_NAME[language])
        _sub(info, "headline", message.headline.get(language))
        _sub(info, "description", message.description.get(language) + "\n" + NOT_OFFICIAL[language])
        if message.instruction is not None:
            _sub(info, "instruction", message.instruction.get(language))
        _sub(info, "web", web)
        if not message.ended:
            _parameter(info, "awareness_level", AWARENESS_LEVEL[message.severity])
        if message.awareness_type is not None:
            _parameter(info, "awareness_type", message.awareness_type)
        _parameter(info, "meltemi_parameter", message.parameter)
        if message.value is not None:
            _parameter(info, "meltemi_value", f"{message.value:.2f}")
        area = ET.SubElement(info, f"{{{CAP_NS}}}area")
        _sub(area, "areaDesc", message.area.description.get(language))
        for circle in message.area.circles:
            _sub(area, "circle", circle)
    body: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return body
