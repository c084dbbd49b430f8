"""CAP 1.2 documents of an alert episode, validated against the OASIS CAP 1.2 XSD."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from sensors.alerting import AlertMessage
from sensors.cap import CAP_NS, cap_document, cap_time
from tests.test_alert_engine import T0, _engine, _temps

XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"
N = {"cap": CAP_NS}
SENDER = "meltemi.thriasio"
WEB = "http://127.0.0.1:8000/"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _episode() -> list[AlertMessage]:
    values = [34.0, 36, 36, 36, 36, 41, 41, 41, 41, 38, 34, 30, 30, 30, 30, 30, 30, 30, 30, 30]
    return [
        m for m in _engine().process(_temps(values), T0 + dt.timedelta(hours=4)) if m.rule == "t"
    ]


def test_every_message_of_an_episode_is_valid_cap(schema: xmlschema.XMLSchema) -> None:
    messages = _episode()
    assert [m.msg_type for m in messages] == ["Alert", "Update", "Update", "Update"]
    for k, message in enumerate(messages):
        document = cap_document(message, messages[:k], SENDER, WEB)
        schema.validate(document.decode())  # raises on any violation
        root = ET.fromstring(document)
        assert root.findtext("cap:msgType", namespaces=N) == message.msg_type
        # Every date-time carries an offset, never Z or fractions (the XSD pattern, checked
        # again here so that a lax validator cannot hide it).
        for element in root.iter():
            if element.tag.split("}")[1] in ("sent", "onset", "effective", "expires"):
                assert re.fullmatch(
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", element.text or ""
                )
        infos = root.findall("cap:info", N)
        assert [i.findtext("cap:language", namespaces=N) for i in infos] == ["el-GR", "en-GB"]
        references = root.findtext("cap:references", namespaces=N)
        if k == 0:
            assert references is None
        else:
            assert references is not None
            assert [r.split(",")[1] for r in references.split(" ")] == [
                m.identifier for m in messages[:k]
            ]
    last = ET.fromstring(cap_document(messages[-1], messages[:-1], SENDER, WEB))
    assert last.findtext("cap:info/cap:responseType", namespaces=N) == "AllClear"
    assert last.findtext("cap:info/cap:urgency", namespaces=N) == "Past"
    first = ET.fromstring(cap_document(messages[0], [], SENDER, WEB))
    assert first.findtext("cap:sent", namespaces=N) == "2026-07-20T09:40:00+03:00"
    levels = first.findall("cap:info/cap:parameter", N)
    assert ("awareness_level", "2; yellow; Moderate") in [
        (p.findtext("cap:valueName", namespaces=N), p.findtext("cap:value", namespaces=N))
        for p in levels
    ]
    descriptions = [d.text or "" for d in first.findall("cap:info/cap:description", N)]
    assert "δεν είναι επίσημη προειδοποίηση" in descriptions[0]
    assert "not an official warning" in descriptions[1]


def test_the_schema_refuses_what_cap_forbids(schema: xmlschema.XMLSchema) -> None:
    # The validator is able to fail: a Z time and a swapped element order are refused.
    message = _episode()[0]
    good = cap_document(message, [], SENDER, WEB).decode()
    sent = cap_time(message.sent)
    assert not schema.is_valid(good.replace(sent, "2026-07-20T06:40:00Z"))
    swapped = good.replace(
        "<status>Actual</status><msgType>Alert</msgType>",
        "<msgType>Alert</msgType><status>Actual</status>",
    )
    assert swapped != good
    assert not schema.is_valid(swapped)
    with pytest.raises(ValueError, match="timezone-aware"):
        cap_time(dt.datetime(2026, 7, 20, 6, 0))  # noqa: DTZ001  # the mistake under test
