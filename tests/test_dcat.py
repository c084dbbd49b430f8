"""``/catalog.jsonld`` against the official DCAT-AP 3.0.1 SHACL shapes (pyshacl): 0 violations,
and its datasets and distributions are the registry's stations and the API's real routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyshacl import validate
from rdflib import RDF, Graph, Namespace, URIRef

from meltemi.services import InfluxDB, Mosquitto
from sensors.settings import Settings
from tests.api_fixtures import ApiThread, base_settings, serve

DATA = Path(__file__).parent / "data"
SHAPES = ["dcat-ap-3.0.1-shapes.ttl", "dcat-ap-3.0.1-range.ttl"]
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
STATIONS = ["dcat-a", "dcat-b"]
# rdflib 7's own JSON-LD parser and pyshacl use rdflib's deprecated Dataset API (not our code)
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:rdflib"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pyshacl"),
]


PUBLISHER = "Δήμος Ελευσίνας"  # the deployment's statement, from MELTEMI_CATALOG_* settings
CONTACT = "open-data@elefsina.example"


@pytest.fixture(scope="module")
def api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Iterator[ApiThread]:
    """The API with a registry of two stations."""
    tmp: Path = tmp_path_factory.mktemp("dcat")
    base = base_settings(influx, broker.port, tmp)
    registry = tmp / "stations.toml"
    registry.write_text(
        "\n".join(
            f'[[station]]\nid = "{s}"\nname = "Station {s}"\nmunicipality = "Elefsina"\n'
            f"lat = {38.0 + k / 10}\nlon = 23.5\nelevation_m = 12\n"
            'parameters = ["air_temperature"]\n'
            for k, s in enumerate(STATIONS)
        )
    )
    off = {
        "stations_file": registry,
        "api_rate_per_s": 0.0,  # one address, many requests
        "catalog_publisher": PUBLISHER,
        "catalog_contact_email": CONTACT,
    }
    with serve(Settings(**(base.model_dump() | off))) as server:
        yield server


@pytest.fixture(scope="module")
def graph(api: ApiThread) -> Graph:
    """The catalogue as an RDF graph."""
    response = api.get("/catalog.jsonld")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    return Graph().parse(data=response.text, format="json-ld")


@pytest.mark.parametrize("shapes", SHAPES)
def test_catalog_conforms_to_dcat_ap_3_0_1(graph, shapes):
    conforms, _, report = validate(
        graph, shacl_graph=str(DATA / shapes), shacl_graph_format="turtle", inference="none"
    )
    assert conforms, report


def test_catalog_shapes_can_fail(graph):
    """The same shapes find the violation when a dataset loses its mandatory description."""
    broken = Graph()
    for triple in graph:
        broken.add(triple)
    first = next(iter(graph.subjects(RDF.type, DCAT.Dataset)))
    broken.remove((first, DCT.description, None))
    conforms, _, report = validate(
        broken, shacl_graph=str(DATA / SHAPES[0]), shacl_graph_format="turtle", inference="none"
    )
    assert not conforms
    assert "description" in report


def test_catalog_lists_the_stations_and_real_routes(api, graph):
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert len(datasets) == 1 + len(STATIONS)
    identifiers = {str(o) for o in graph.objects(None, DCT.identifier)}
    assert identifiers == set(STATIONS)
    services = set(graph.subjects(RDF.type, DCAT.DataService))
    assert len(services) == 2
    urls = sorted({str(u) for u in graph.objects(None, DCAT.accessURL)})
    assert len(urls) == 4 + 3 * len(STATIONS)
    for url in urls:
        path = url.removeprefix(api.url)
        if path.startswith("/v1/export"):
            continue  # the export route is another helper's (CONTRACT §6); its URL is fixed
        response = api.client.get(path)
        assert response.status_code == 200, (url, response.text[:200])
    endpoint = {str(u) for u in graph.objects(None, DCAT.endpointURL)}
    assert endpoint == {f"{api.url}/", f"{api.url}/sta/v1.1"}
    catalog = URIRef(f"{api.url}/catalog.jsonld")
    assert (catalog, RDF.type, DCAT.Catalog) in graph


def test_catalog_states_the_configured_publisher_licence_and_contact(graph):
    names = {str(o) for o in graph.objects(None, URIRef("http://xmlns.com/foaf/0.1/name"))}
    assert PUBLISHER in names
    emails = {
        str(o) for o in graph.objects(None, URIRef("http://www.w3.org/2006/vcard/ns#hasEmail"))
    }
    assert emails == {f"mailto:{CONTACT}"}
    licences = {str(o) for o in graph.objects(None, DCT.license)}
    assert licences == {"http://publications.europa.eu/resource/authority/licence/CC_BY_4_0"}
