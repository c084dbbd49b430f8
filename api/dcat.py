"""The DCAT-AP 3.0.1 description of Meltemi's data and API, as JSON-LD (CONTRACT §6).

What a national open-data portal harvests (https://semiceu.github.io/DCAT-AP/releases/3.0.1/):

- one ``dcat:Catalog`` (this document), published by the network's operator;
- one ``dcat:Dataset`` for the network ("readings of every station") and one per station, each
  with its place (``dct:spatial``: a ``dct:Location`` with a WKT point or bounding box), the
  time it covers from now on (``dct:temporal``), its themes (EU data themes ``ENVI``,
  ``REGI``) and update frequency (``UPDATE_CONT``: continuous);
- ``dcat:Distribution`` s that are the API's routes: the latest readings (JSON), a station's
  series (JSON and CSV), the streamed export (CSV, NDJSON) and the SensorThings API, each with
  ``dcat:accessURL``, format and media type from the EU/IANA vocabularies, the licence, and
  the ``dcat:DataService`` that serves it;
- two ``dcat:DataService`` s: the Meltemi HTTP API (described by ``/openapi.json``) and the OGC
  SensorThings API v1.1 facade (``dct:conformsTo`` the OGC standard).

Every IRI is built from the request's base URL, so the document describes the server that
answers it. The licence (``DATA_LICENCE``) and publisher are this deployment's statement:
change them here if the operator publishes under other terms.
"""

from __future__ import annotations

from typing import Final

from sensors.catalog import CATALOG
from sensors.registry import Station

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]

EU: Final = "http://publications.europa.eu/resource/authority"
IANA: Final = "https://www.iana.org/assignments/media-types"
DATA_LICENCE: Final = f"{EU}/licence/CC_BY_4_0"  # the operator's choice; CC BY 4.0 by default
PUBLISHER_NAME: Final = "Meltemi climate network"
STA_STANDARD: Final = "http://www.opengis.net/doc/is/sensorthings/1.1"

CONTEXT: Final[dict[str, Json]] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "locn": "http://www.w3.org/ns/locn#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "gsp": "http://www.opengis.net/ont/geosparql#",
}


def _en(text: str) -> dict[str, Json]:
    return {"@value": text, "@language": "en"}


def _ref(iri: str, kind: str | None = None) -> dict[str, Json]:
    return {"@id": iri} if kind is None else {"@id": iri, "@type": kind}


def _concept(iri: str, label: str) -> dict[str, Json]:
    """A concept of an EU vocabulary, with its English label (DCAT-AP: skos:prefLabel 1..n)."""
    return {"@id": iri, "@type": "skos:Concept", "skos:prefLabel": _en(label)}


def _wkt(text: str) -> dict[str, Json]:
    return {"@value": text, "@type": "gsp:wktLiteral"}


def _format(name: str) -> dict[str, Json]:
    return _ref(f"{EU}/file-type/{name}", "dct:MediaTypeOrExtent")


def _media(media_type: str) -> dict[str, Json]:
    return _ref(f"{IANA}/{media_type}", "dct:MediaType")


class CatalogBuilder:
    """Builds the catalogue for a base URL and the registry's stations."""

    def __init__(
        self,
        base: str,
        stations: list[Station],
        publisher: str = PUBLISHER_NAME,
        licence: str = DATA_LICENCE,
        contact_email: str | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.stations = stations
        self.publisher = publisher
        self.licence = licence
        self.contact_email = contact_email
        self.api_service = f"{self.base}/catalog.jsonld#api"
        self.sta_service = f"{self.base}/catalog.jsonld#sensorthings"

    def _publisher(self) -> dict[str, Json]:
        return {
            "@id": f"{self.base}/catalog.jsonld#publisher",
            "@type": "foaf:Agent",
            "foaf:name": _en(self.publisher),
        }

    def _contact(self) -> dict[str, Json]:
        contact: dict[str, Json] = {
            "@id": f"{self.base}/catalog.jsonld#contact",
            "@type": ["vcard:Kind", "vcard:Organization"],  # no inference at harvesters
            "vcard:fn": self.publisher,
            "vcard:hasURL": _ref(self.base + "/"),
        }
        if self.contact_email:
            contact["vcard:hasEmail"] = _ref(f"mailto:{self.contact_email}")
        return contact

    def _distribution(
        self, key: str, title: str, url: str, fmt: str, media: str, service: str
    ) -> dict[str, Json]:
        return {
            "@id": f"{self.base}/catalog.jsonld#{key}",
            "@type": "dcat:Distribution",
            "dct:title": _en(title),
            "dcat:accessURL": _ref(url),
            "dct:format": _format(fmt),
            "dcat:mediaType": _media(media),
            "dct:license": _ref(self.licence, "dct:LicenseDocument"),
            "dcat:accessService": _ref(service),
        }

    def _common(self, key: str, title: str, description: str) -> dict[str, Json]:
        return {
            "@id": f"{self.base}/catalog.jsonld#{key}",
            "@type": "dcat:Dataset",
            "dct:title": _en(title),
            "dct:description": _en(description),
            "dct:publisher": _ref(f"{self.base}/catalog.jsonld#publisher"),
            "dcat:contactPoint": _ref(f"{self.base}/catalog.jsonld#contact"),
            "dcat:theme": [
                _concept(f"{EU}/data-theme/ENVI", "Environment"),
                _concept(f"{EU}/data-theme/REGI", "Regions and cities"),
            ],
            "dct:accrualPeriodicity": _ref(f"{EU}/frequency/UPDATE_CONT", "dct:Frequency"),
            "dcat:keyword": [_en("climate"), _en("weather"), _en("air quality"), _en("sensors")],
        }

    def _network(self) -> dict[str, Json]:
        lons = [s.lon for s in self.stations] or [0.0]
        lats = [s.lat for s in self.stations] or [0.0]
        box = (
            f"POLYGON(({min(lons)} {min(lats)}, {max(lons)} {min(lats)}, "
            f"{max(lons)} {max(lats)}, {min(lons)} {max(lats)}, {min(lons)} {min(lats)}))"
        )
        dataset = self._common(
            "network",
            "Meltemi network: readings of every station",
            "Quality-controlled readings of every Meltemi climate station "
            f"({len(self.stations)} stations), each value with its QC flag.",
        )
        dataset["dct:spatial"] = {
            "@id": f"{self.base}/catalog.jsonld#network-area",
            "@type": "dct:Location",
            "dcat:bbox": _wkt(box),
        }
        dataset["dcat:distribution"] = [
            self._distribution(
                "network-latest",
                "Latest reading of every station (JSON)",
                f"{self.base}/v1/latest",
                "JSON",
                "application/json",
                self.api_service,
            ),
            self._distribution(
                "network-export-csv",
                "Export of any range, streamed (CSV)",
                f"{self.base}/v1/export",
                "CSV",
                "text/csv",
                self.api_service,
            ),
            self._distribution(
                "network-export-ndjson",
                "Export of any range, streamed (NDJSON)",
                f"{self.base}/v1/export?format=ndjson",
                "JSON",
                "application/x-ndjson",
                self.api_service,
            ),
            self._distribution(
                "network-sensorthings",
                "OGC SensorThings API v1.1 (read-only)",
                f"{self.base}/sta/v1.1",
                "JSON",
                "application/json",
                self.sta_service,
            ),
        ]
        return dataset

    def _station(self, position: int, station: Station) -> dict[str, Json]:
        key = f"station-{position}"
        names = ", ".join(CATALOG[p].name.lower() for p in station.parameters)
        dataset = self._common(
            key,
            f"Meltemi station {station.id}: readings",
            f"Quality-controlled readings of station {station.name} ({station.id}) in "
            f"{station.municipality}, {station.elevation_m:g} m: {names}.",
        )
        dataset["dct:identifier"] = station.id
        dataset["dct:spatial"] = {
            "@id": f"{self.base}/catalog.jsonld#{key}-place",
            "@type": "dct:Location",
            "locn:geometry": _wkt(f"POINT({station.lon} {station.lat})"),
        }
        series = f"{self.base}/v1/stations/{station.id}/series"
        dataset["dcat:distribution"] = [
            self._distribution(
                f"{key}-series-json",
                f"Series of station {station.id} (JSON)",
                series,
                "JSON",
                "application/json",
                self.api_service,
            ),
            self._distribution(
                f"{key}-series-csv",
                f"Series of station {station.id} (CSV)",
                f"{series}?format=csv",
                "CSV",
                "text/csv",
                self.api_service,
            ),
            self._distribution(
                f"{key}-sensorthings",
                f"Station {station.id} as a SensorThings Thing",
                f"{self.base}/sta/v1.1/Things({position})",  # api.sta: Thing id = position
                "JSON",
                "application/json",
                self.sta_service,
            ),
        ]
        return dataset

    def _service(
        self, iri: str, title: str, description: str, endpoint: str, datasets: list[str]
    ) -> dict[str, Json]:
        return {
            "@id": iri,
            "@type": "dcat:DataService",
            "dct:title": _en(title),
            "dct:description": _en(description),
            "dcat:endpointURL": _ref(endpoint),
            "dct:publisher": _ref(f"{self.base}/catalog.jsonld#publisher"),
            "dct:license": _ref(self.licence, "dct:LicenseDocument"),
            "dcat:servesDataset": [_ref(d) for d in datasets],
        }

    def build(self) -> dict[str, Json]:
        """Return the catalogue as a JSON-LD document."""
        datasets = [self._network()] + [
            self._station(k, s) for k, s in enumerate(self.stations, start=1)
        ]
        ids = [str(d["@id"]) for d in datasets]
        api = self._service(
            self.api_service,
            "Meltemi HTTP API",
            "Read-only JSON/CSV API of the Meltemi readings: latest values, series with "
            "aggregates, streamed export, station health.",
            self.base + "/",
            ids,
        )
        api["dcat:endpointDescription"] = _ref(f"{self.base}/openapi.json")
        sta = self._service(
            self.sta_service,
            "Meltemi SensorThings API",
            "Read-only OGC SensorThings API v1.1 view of the stations and their readings.",
            f"{self.base}/sta/v1.1",
            ids,
        )
        sta["dct:conformsTo"] = _ref(STA_STANDARD, "dct:Standard")
        catalog: dict[str, Json] = {
            "@id": f"{self.base}/catalog.jsonld",
            "@type": "dcat:Catalog",
            "dct:title": _en("Meltemi open climate data"),
            "dct:description": _en(
                "Datasets and services of the Meltemi climate-telemetry network: "
                "quality-controlled station readings, openly licensed."
            ),
            "dct:publisher": _ref(f"{self.base}/catalog.jsonld#publisher"),
            "foaf:homepage": _ref(self.base + "/", "foaf:Document"),
            "dct:license": _ref(self.licence, "dct:LicenseDocument"),
            "dct:language": _ref(f"{EU}/language/ENG", "dct:LinguisticSystem"),
            "dcat:dataset": [_ref(i) for i in ids],
            "dcat:service": [_ref(self.api_service), _ref(self.sta_service)],
        }
        return {
            "@context": CONTEXT,
            "@graph": [catalog, self._publisher(), self._contact(), api, sta, *datasets],
        }
