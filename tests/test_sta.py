"""The SensorThings API v1.1 facade against a real InfluxDB: the level-1 (sensing core, read)
checks of OGC's ets-sta10 ported one by one, the FROST Python client (frost-sta-client, by
Fraunhofer IOSB) as a client no one here wrote, and the observations equal to what was stored.

The ets-sta10 checks are those of ``src/main/java/org/opengis/cite/sta10/sensingCore/
Capability1Tests.java`` (github.com/opengeospatial/ets-sta10, commit f8308be), group
``level-1``; each test below names the TestNG method it ports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import frost_sta_client as fsc
import pytest

from ingest.lineproto import format_point
from meltemi.services import InfluxDB, Mosquitto
from sensors import schema
from sensors.catalog import PARAMETERS
from sensors.settings import Settings
from tests.api_fixtures import NS, ApiThread, base_settings, serve
from tests.helpers import write_lines

T0_S = 1_780_000_000  # 2026-05-28T20:26:40Z
STEP_S = 60
S1, S2, S3 = "sta-one", "sta-two", "sta-quiet"
S1_PARAMS = ["air_temperature", "wind_speed"]
N1, N2 = 30, 5
K = {spec.id: k for k, spec in enumerate(PARAMETERS, start=1)}
DS_TEMP_1 = 1 * 100 + K["air_temperature"]
DS_WIND_1 = 1 * 100 + K["wind_speed"]
DS_TEMP_2 = 2 * 100 + K["air_temperature"]

# ets-sta10 util/EntityType.java: mandatory properties and relations of each entity type
PROPERTIES = {
    "Things": ["name", "description"],
    "Locations": ["name", "description", "encodingType", "location"],
    "Sensors": ["name", "description", "encodingType", "metadata"],
    "ObservedProperties": ["name", "definition", "description"],
    "Observations": ["phenomenonTime", "result", "resultTime"],
    "Datastreams": ["name", "description", "unitOfMeasurement", "observationType"],
    "FeaturesOfInterest": ["name", "description", "encodingType", "feature"],
    "HistoricalLocations": ["time"],
}
RELATIONS = {
    "Things": ["Datastreams", "HistoricalLocations", "Locations"],
    "Locations": ["HistoricalLocations", "Things"],
    "Sensors": ["Datastreams"],
    "ObservedProperties": ["Datastreams"],
    "Observations": ["Datastream", "FeatureOfInterest"],
    "Datastreams": ["Thing", "Sensor", "ObservedProperty", "Observations"],
    "FeaturesOfInterest": ["Observations"],
    "HistoricalLocations": ["Thing", "Locations"],
}
PLURAL = {
    "Thing": "Things",
    "Sensor": "Sensors",
    "ObservedProperty": "ObservedProperties",
    "Datastream": "Datastreams",
    "FeatureOfInterest": "FeaturesOfInterest",
}
SETS = list(PROPERTIES)


def _value(station: str, parameter: str, k: int) -> float:
    return round(10.0 + k * 0.25 + (5.0 if parameter == "wind_speed" else 0.0), 2)


def _lines() -> list[str]:
    lines = []
    for station, params, n in ((S1, S1_PARAMS, N1), (S2, ["air_temperature"], N2)):
        for k in range(n):
            fields: dict[str, float | int | str] = {schema.SEQ_FIELD: k}
            for p in params:
                fields[p] = _value(station, p, k)
                suspect = station == S1 and p == "wind_speed" and k == 3
                fields[schema.qc_field(p)] = "suspect" if suspect else "good"
                if suspect:
                    fields[schema.check_field(p)] = "step"
            ts = (T0_S + k * STEP_S) * NS
            lines.append(format_point(schema.READINGS, {schema.STATION_TAG: station}, fields, ts))
    return lines


@pytest.fixture(scope="module")
def api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Iterator[ApiThread]:
    """The API over two reporting stations and a quiet one."""
    tmp: Path = tmp_path_factory.mktemp("sta")
    base = base_settings(influx, broker.port, tmp)
    registry = tmp / "stations.toml"
    tables = []
    for n, (station, params) in enumerate(
        ((S1, S1_PARAMS), (S2, ["air_temperature"]), (S3, ["air_temperature"]))
    ):
        listed = ", ".join(f'"{p}"' for p in params)
        tables.append(
            f'[[station]]\nid = "{station}"\nname = "STA {n}"\nmunicipality = "Elefsina"\n'
            f"lat = {38.0 + n}\nlon = {23.5 + n}\nelevation_m = {10 + n}\nparameters = [{listed}]\n"
        )
    registry.write_text("\n".join(tables))
    # many requests from one address: the rate limit is off here, and tested on its own below
    settings = Settings(**(base.model_dump() | {"stations_file": registry, "api_rate_per_s": 0.0}))
    write_lines(influx.url, settings.influx_db, _lines())
    with serve(settings) as server:
        yield server


def _get(api: ApiThread, url: str, status: int = 200) -> Any:
    path = url.removeprefix(api.url)
    response = api.client.get(path)
    assert response.status_code == status, (url, response.text)
    return response.json() if "json" in response.headers.get("content-type", "") else response.text


def _root(api: ApiThread) -> str:
    return f"{api.url}/sta/v1.1"


# --- ets-sta10 level-1, ported ---------------------------------------------------------------


def _check_entity(kind: str, entity: dict[str, Any]) -> None:
    """ets checkEntityControlInformation, checkEntityProperties, checkEntityRelations."""
    assert isinstance(entity["@iot.id"], int)
    assert entity["@iot.selfLink"].endswith(f"/{kind}({entity['@iot.id']})")
    for prop in PROPERTIES[kind]:
        assert prop in entity, (kind, prop)
    for relation in RELATIONS[kind]:
        assert entity[f"{relation}@iot.navigationLink"] == f"{entity['@iot.selfLink']}/{relation}"


def test_ets_level1_checkServiceRootUri(api):
    body = _get(api, _root(api))
    urls = {entry["name"]: entry["url"] for entry in body["value"]}
    assert urls == {name: f"{_root(api)}/{name}" for name in SETS}


@pytest.mark.parametrize("kind", SETS)
def test_ets_level1_readEntitiesAndCheckResponse(api, kind):
    body = _get(api, f"{_root(api)}/{kind}")
    assert body["value"], kind
    for entity in body["value"]:
        _check_entity(kind, entity)


@pytest.mark.parametrize("kind", SETS)
def test_ets_level1_readNonexistentEntity(api, kind):
    body = _get(api, f"{_root(api)}/{kind}({2**63 - 1})", 404)
    assert body["detail"]


@pytest.mark.parametrize("kind", SETS)
def test_ets_level1_readEntityAndCheckResponse(api, kind):
    first = _get(api, f"{_root(api)}/{kind}")["value"][0]
    entity = _get(api, f"{_root(api)}/{kind}({first['@iot.id']})")
    _check_entity(kind, entity)
    assert entity == first


@pytest.mark.parametrize("kind", SETS)
def test_ets_level1_readPropertyOfEntityAndCheckResponse(api, kind):
    first = _get(api, f"{_root(api)}/{kind}")["value"][0]
    for prop in PROPERTIES[kind]:
        url = f"{_root(api)}/{kind}({first['@iot.id']})/{prop}"
        assert _get(api, url) == {prop: first[prop]}
        value = api.client.get(url.removeprefix(api.url) + "/$value")
        assert value.status_code == 200
        if prop in ("location", "feature", "unitOfMeasurement"):
            assert value.text.index("{") == 0
            assert json.loads(value.text) == first[prop]
        else:
            assert "{" not in value.text
            assert value.text == str(first[prop])


def _association_links(body: Any, plural: bool) -> None:
    """ets checkAssociationLinks: $ref answers hold selfLinks only."""
    for obj in body["value"][:2] if plural else [body]:
        assert list(obj) == ["@iot.selfLink"]


def _walk(api: ApiThread, path: list[tuple[str, int | None]], level: int, seen: list[str]) -> None:
    """ets readRelatedEntity: every relation, recursively, to resourcePathLevel = 4."""
    if len(path) > 4:
        return
    head = path[-1][0]
    plural = head in SETS
    url = _root(api) + "".join(
        f"/{name}" + (f"({i})" if i is not None else "") for name, i in path[:-1]
    )
    url += f"/{head}"
    body = _get(api, url)
    seen.append(url)
    if plural:
        assert body["value"], f"Expecting a non-empty list for request: {url}"
        entity_id = body["value"][0]["@iot.id"]
    else:
        entity_id = body["@iot.id"]
    _association_links(_get(api, url + "/$ref"), plural)
    if len(path) == 4:
        return
    kind = head if plural else PLURAL[head]
    for relation in RELATIONS[kind]:
        _walk(
            api, [*path[:-1], (head, entity_id if plural else None), (relation, None)], level, seen
        )


@pytest.mark.parametrize("kind", SETS)
def test_ets_level1_checkResourcePaths(api, kind):
    seen: list[str] = []
    _walk(api, [(kind, None)], 0, seen)
    assert len(seen) >= 9  # the set, and at least its relations two deep


# --- what the facade says about the stored data --------------------------------------------


def test_observations_equal_the_stored_values_with_paging(api):
    url = f"{_root(api)}/Datastreams({DS_WIND_1})/Observations?$top=7&$count=true"
    got: list[dict[str, Any]] = []
    pages = 0
    while url:
        body = _get(api, url)
        assert body["@iot.count"] == N1
        got += body["value"]
        url = body.get("@iot.nextLink", "")
        pages += 1
    assert pages == 5  # 7 + 7 + 7 + 7 + 2
    assert [o["result"] for o in got] == [_value(S1, "wind_speed", k) for k in range(N1)]
    assert [o["@iot.id"] for o in got] == [DS_WIND_1 * 2**32 + T0_S + k * STEP_S for k in range(N1)]
    assert got[3]["resultQuality"] == "suspect: step"
    assert got[4]["resultQuality"] == "good"
    one = _get(api, got[3]["@iot.selfLink"])
    assert one == got[3]
    assert _get(api, got[3]["@iot.selfLink"] + "/Datastream")["@iot.id"] == DS_WIND_1
    assert _get(api, got[3]["@iot.selfLink"] + "/FeatureOfInterest")["@iot.id"] == 1


def test_observations_across_datastreams_and_time_filter(api):
    # /Observations lists Datastream by Datastream (id order), oldest first, across pages
    url = f"{_root(api)}/Observations?$top=13"
    got: list[dict[str, Any]] = []
    while url:
        body = _get(api, url)
        assert len(body["value"]) <= 13
        got += body["value"]
        url = body.get("@iot.nextLink", "")
    order = [*sorted([DS_TEMP_1, DS_WIND_1]), DS_TEMP_2]
    sizes = {DS_TEMP_1: N1, DS_WIND_1: N1, DS_TEMP_2: N2}
    expected = [ds * 2**32 + T0_S + k * STEP_S for ds in order for k in range(sizes[ds])]
    assert [o["@iot.id"] for o in got] == expected
    skipped = _get(api, f"{_root(api)}/Observations?$skip=58&$top=4&$count=true")
    assert [o["@iot.id"] for o in skipped["value"]] == expected[58:62]
    assert skipped["@iot.count"] == 2 * N1 + N2
    start = f"{T0_S + 10 * STEP_S}"
    t10 = _get(api, f"{_root(api)}/Observations({DS_TEMP_1 * 2**32 + int(start)})")
    stamp = t10["phenomenonTime"]
    same = _get(api, t10["@iot.selfLink"])["resultTime"]
    flt = f"phenomenonTime ge {stamp} and resultTime lt {same}"  # empty: ge t and lt t
    assert _get(api, f"{_root(api)}/Observations?$filter={flt}")["value"] == []
    after = f"$filter=phenomenonTime gt {stamp}&$count=true"
    filtered = _get(api, f"{_root(api)}/FeaturesOfInterest(1)/Observations?{after}")
    assert filtered["@iot.count"] == 2 * (N1 - 11)
    assert filtered["value"][0]["result"] == _value(S1, "air_temperature", 11)
    bad = api.client.get("/sta/v1.1/Observations", params={"$filter": "result gt 3"})
    assert bad.status_code == 400
    assert "time comparisons" in bad.json()["detail"]
    assert api.client.get("/sta/v1.1/Things", params={"$expand": "Datastreams"}).status_code == 400
    assert api.client.get("/sta/v1.1/Things", params={"$top": "x"}).status_code == 400


def test_entities_describe_the_registry(api):
    things = _get(api, f"{_root(api)}/Things?$count=true")
    assert things["@iot.count"] == 3
    assert [t["properties"]["station_id"] for t in things["value"]] == [S1, S2, S3]
    location = _get(api, f"{_root(api)}/Things(2)/Locations")["value"]
    assert location[0]["location"] == {"type": "Point", "coordinates": [24.5, 39.0, 11.0]}
    history = _get(api, f"{_root(api)}/HistoricalLocations")["value"]
    assert [h["@iot.id"] for h in history] == [1, 2]  # the quiet station never reported
    assert history[0]["time"] == "2026-05-28T20:26:40Z"
    streams = _get(api, f"{_root(api)}/Things(1)/Datastreams")["value"]
    assert sorted(s["@iot.id"] for s in streams) == sorted([DS_TEMP_1, DS_WIND_1])
    sensor = _get(api, f"{_root(api)}/Datastreams({DS_TEMP_2})/Sensor")
    assert sensor["@iot.id"] == K["air_temperature"]
    users = _get(api, f"{_root(api)}/Sensors({K['air_temperature']})/Datastreams")["value"]
    assert [d["@iot.id"] for d in users] == [DS_TEMP_1, DS_TEMP_2, 3 * 100 + K["air_temperature"]]
    page = _get(api, f"{_root(api)}/Datastreams?$top=2")
    assert page["@iot.nextLink"].endswith("$top=2&%24skip=2") or "skip=2" in page["@iot.nextLink"]
    assert _get(api, f"{_root(api)}/Things(1)/Datastreams({DS_TEMP_2})", 404)["detail"]
    assert _get(api, f"{_root(api)}/Things(1)/nonsense", 404)["detail"]


# frost-sta-client 1.1 calls furl's deprecated ``pathstr`` (its own code, not ours)
@pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")
def test_frost_sta_client_reads_the_facade(api):
    service = fsc.SensorThingsService(_root(api))
    things = list(service.things().query().list())
    assert [t.name for t in things] == ["STA 0", "STA 1", "STA 2"]
    thing = service.things().find(1)
    assert thing.id == 1
    assert thing.properties["station_id"] == S1
    datastream = service.datastreams().find(DS_WIND_1)
    assert datastream.unit_of_measurement.symbol == "m/s"
    observations = list(
        service.observations()
        .query()
        .filter(f"phenomenonTime lt {datastream_time(10)}")
        .top(4)
        .list()
    )
    # the client follows @iot.nextLink: every observation before the 10th minute, 3 datastreams
    assert len(observations) == 10 + 10 + N2
    assert [o.result for o in observations[10:20]] == [
        _value(S1, "wind_speed", k) for k in range(10)
    ]
    sensors = list(service.sensors().query().list())
    assert len(sensors) == len(PARAMETERS)
    locations = list(service.locations().query().list())
    assert len(locations) == 3


def datastream_time(k: int) -> str:
    """Return the RFC 3339 time of the k-th reading."""
    from sensors.models import format_ts

    return format_ts((T0_S + k * STEP_S) * NS)


def test_sta_is_under_the_rate_limit(api, tmp_path):
    """/sta/ reads InfluxDB like /v1/, so it spends the same per-client tokens (api.limits):
    Observations as a heavy request (5 tokens of 7), an entity set 1."""
    values = api.app.state.settings.model_dump() | {"api_rate_per_s": 0.01, "api_rate_burst": 7}
    with serve(Settings(**values)) as limited:
        assert limited.client.get("/sta/v1.1/Observations?$top=1").status_code == 200
        assert limited.client.get("/sta/v1.1/Things").status_code == 200
        assert limited.client.get("/sta/v1.1/Things").status_code == 200
        refused = limited.client.get("/sta/v1.1/Things")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "rate limit" in refused.json()["detail"]
