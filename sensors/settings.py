"""Settings of every component, one class mirroring CONTRACT §2 (prefix ``MELTEMI_``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MELTEMI_"


class Settings(BaseSettings):
    """Configuration from the environment (and ``.env``); every value has an embedded default."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    # Fixed client id: the broker keeps this ingester's session (and queue) under it.
    mqtt_client_id: str = Field("meltemi-ingest", min_length=1, max_length=64)
    mqtt_session_expiry_s: int = Field(7 * 24 * 3600, ge=60)
    # MQTT v5 Receive Maximum: QoS 1 messages the broker may have in flight to the ingester.
    # Large enough that messages keep arriving while a batch is written and acknowledged (the
    # bench, issue 9: at 1,000 the window, not the CPU, capped an ingester's throughput).
    mqtt_receive_maximum: int = Field(5000, ge=1, le=65535)
    # MQTT v5 shared-subscription group; None subscribes normally (one ingester).
    ingest_shared_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    influx_url: str = Field("http://127.0.0.1:8086", pattern=r"^https?://")
    influx_db: str = Field("meltemi", min_length=1, max_length=128)
    influx_token: SecretStr | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_timeout_s: float = Field(10.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_cors_origins: list[str] = Field(default_factory=list)
    api_max_streams: int = Field(100, ge=1)
    # The API's own broker credentials for the live stream (read-only: the meltemi-api role).
    api_mqtt_username: str | None = None
    api_mqtt_password: SecretStr | None = None

    data_dir: Path = Path("./var")
    stations_file: Path | None = None

    backfill_horizon_days: float = Field(30.0, gt=0)  # CONTRACT §4: older readings are refused
    future_tolerance_s: float = Field(300.0, ge=0)  # CONTRACT §4: 5 minutes ahead at most
    ingest_batch_max: int = Field(5000, ge=1)
    # How long the writer waits for more messages before a write (up to ingest_batch_max lines).
    # 0 writes whatever has arrived: under a burst that made writes of ~25 readings, each one
    # costing InfluxDB an fsync (issue 9); 0.1 s makes them hundreds to thousands.
    ingest_linger_s: float = Field(0.1, ge=0, le=5)
    ingest_metrics_port: int = Field(0, ge=0, le=65535)  # 0: no metrics listener of its own
    ingest_qc: bool = True
    # --- Scale-out (issue 9; `meltemi ingest --workers N`, `meltemi up`) ---
    # Ingester processes on the shared subscription, each with its own session, spool and
    # client id (worker i: "{MELTEMI_MQTT_CLIENT_ID}-{i}"). 1 runs the ingester in-process.
    ingest_workers: int = Field(1, ge=1, le=64)
    # The workers' own broker accounts (the broker enforces client id = username): a 0600 JSON
    # object {"meltemi-ingest-1": "secret", ...} that `meltemi up` writes. Unset: worker i logs
    # in as "{MELTEMI_MQTT_USERNAME}-{i}" with MELTEMI_MQTT_PASSWORD.
    ingest_credentials_file: Path | None = None

    # --- InfluxDB provisioning (issue 8 part 3) ---
    # Duration of the `quarantine` retention policy that deploy/provision_influxdb.py and
    # `meltemi up` create on the database (the ingester writes quarantine records into it).
    quarantine_retention_days: int = Field(90, ge=1, le=36500)
    # ---- Broker identities (issue 8; `meltemi stations`, `meltemi accounts`, `meltemi up`) ----
    # The dynamic-security admin client the commands use to apply changes to a running broker.
    # Unset password: read from the embedded set-up's <data_dir>/secrets/broker.json (0600).
    broker_admin_username: str = Field(
        "meltemi-admin", pattern=r"^meltemi-admin(-[a-z0-9]{1,32})?$"
    )
    broker_admin_password: SecretStr | None = None
    # The simulator's per-station secrets (a 0600 JSON file {station_id: secret}); `meltemi up`
    # writes it. Unset: simulated stations connect without a password (the test brokers).
    sim_credentials_file: Path | None = None
    # --- API surface (issue 8 part 8) ---
    # /docs serves Swagger UI from vendored files (api/static/vendor/swagger-ui); false: no /docs.
    api_docs: bool = True
    # Send Strict-Transport-Security on every response. Set it when the API is only reachable
    # through a TLS-terminating proxy; a request that reached the API as https (TLS at uvicorn,
    # or X-Forwarded-Proto from a trusted proxy) gets the header either way.
    api_hsts: bool = False
    # Cache-Control max-age of public data answers (/v1/...); health, metrics and the live
    # stream are always no-store.
    api_data_max_age_s: int = Field(10, ge=0, le=86_400)
    # --- API request cost (issue 8 part 6, RELIABILITY S9/S10; api.limits, api.cost) ---
    # Peers (IP addresses or CIDR networks, JSON list) whose X-Forwarded-For is believed; from
    # any other peer the header is ignored (rate limits and the per-address stream cap).
    api_trusted_proxies: list[str] = Field(default_factory=list)
    # Work budget of one series request: stored values InfluxDB would scan (readings in the
    # station's data span within the range x parameters read); more is refused with 400.
    api_max_scan_values: int = Field(10_000_000, ge=1000)
    # Per-client token bucket over /v1/*: refill per second (0: no rate limit) and capacity.
    api_rate_per_s: float = Field(2.0, ge=0)
    api_rate_burst: int = Field(120, ge=1)
    api_heavy_cost: int = Field(5, ge=1)  # tokens a series request takes (others take 1)
    # Concurrent heavy (series) requests: overall and per client; a request waits at most
    # api_heavy_wait_s for a slot (at most api_max_heavy waiting), then 503 (429 per client).
    api_max_heavy: int = Field(4, ge=1)
    api_max_heavy_per_client: int = Field(2, ge=1)
    api_heavy_wait_s: float = Field(2.0, ge=0, le=30)
    # Dashboard queries (all-station latest/stations, series ending now) are shared for this
    # long: a crowd costs one InfluxDB query per TTL. 0 disables the cache.
    api_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    # /v1/latest from memory fed by the live feed (api.latest_memory); false: from InfluxDB.
    api_latest_from_memory: bool = True
    # `meltemi rollup run` (meltemi.rollup): a pass over the last rollup_recent_hours every
    # rollup_interval_s, over the whole back-fill horizon every rollup_deep_interval_s.
    rollup_interval_s: float = Field(10.0, gt=0, le=3600)
    rollup_recent_hours: float = Field(3.0, ge=2, le=48)  # >= 2: api.rollups' late-arrival rule
    rollup_deep_interval_s: float = Field(600.0, gt=0, le=86_400)
    # The API reads rollups while the last pass is at most this old (api.rollups).
    api_rollup_stale_s: float = Field(120.0, gt=0)

    @field_validator("api_trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)  # ValueError: not an address
        return [entry.strip() for entry in value]

    # --- The open-data catalogue (/catalog.jsonld, DCAT-AP 3.0.1): this deployment's statement ---
    catalog_publisher: str = Field("Meltemi climate network", min_length=1, max_length=200)
    # The data licence as an EU authority-table IRI (CC BY 4.0 unless the operator decides).
    catalog_licence: str = Field(
        "http://publications.europa.eu/resource/authority/licence/CC_BY_4_0",
        pattern=r"^https?://\S+$",
    )
    catalog_contact_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    # --- A bounded cost for every message (issue 8 part 4) ---
    # Per-station token bucket, counted in readings (a message costs max(1, its readings)).
    # The burst lets a day of buffered readings (8,640 at 10 s, replayed in arrays of 500) and
    # the ingest benchmark (2,000 single messages per station at full speed) through untouched;
    # the refill (50x a 10-s station) stops a station sending thousands per second. 0 disables.
    ingest_rate_burst: int = Field(10_000, ge=0)
    ingest_rate_per_s: float = Field(5.0, gt=0)
    # One rate_exceeded record per station per this interval, carrying the count.
    ingest_rate_record_interval_s: float = Field(60.0, gt=0)
    # (quarantine_retention_days, above: the `quarantine` retention policy's duration; the
    # ingester creates it at start when allowed, else expects it provisioned.)
    # How often the ingester counts the quarantine's records for /metrics (one count query).
    ingest_quarantine_count_interval_s: float = Field(60.0, gt=0)

    # --- Alert engine (issue 10; helper "civil"): `meltemi alerts`, /v1/alerts --------------
    # The rules file (TOML, alerts/rules.py); unset: the packaged alerts/default_rules.toml.
    alerts_rules_file: Path | None = None
    alerts_interval_s: float = Field(30.0, gt=0, le=3600)  # the timer: evaluate this often
    # Readings are evaluated once they are this old, so that late deliveries are in place and
    # a replay sees the same readings (a reading stored later than this is not evaluated).
    alerts_lag_s: float = Field(120.0, ge=0, le=86_400)
    # On the very first start (no state file), how far back the engine begins reading.
    alerts_lookback_h: float = Field(6.0, gt=0, le=24 * 30)
    alerts_state_file: Path | None = None  # default <data_dir>/alerts/state.json
    alerts_sender: str = Field("meltemi@thriasio", pattern=r"^[A-Za-z0-9._:@-]{1,200}$")
    # The engine's broker account (role meltemi-alerts: the only writer of meltemi/alerts/#).
    alerts_mqtt_username: str | None = None
    alerts_mqtt_password: SecretStr | None = None
    # A replay clock for demonstrations and tests: "START@ANCHOR*SPEED" makes the engine's now
    # START + (wall time - ANCHOR epoch seconds) * SPEED. Unset: the wall clock.
    alerts_clock: str | None = Field(None, max_length=100)
    # --- end alert engine ------------------------------------------------------------------


class SettingsError(Exception):
    """The environment holds an invalid value; the message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning errors into sentences naming MELTEMI_ vars."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # overrides are checked by pydantic
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ENV_PREFIX + "_".join(str(part) for part in error["loc"][:1]).upper()
            shown = "***" if _is_secret(name) else repr(error.get("input"))
            lines.append(f"{name}: {error['msg']} (got {shown})")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from exc


def _is_secret(variable: str) -> bool:
    return variable.endswith(("_PASSWORD", "_TOKEN"))
