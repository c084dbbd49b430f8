"""Settings of every component, one class mirroring CONTRACT §2 (prefix ``MELTEMI_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
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
    mqtt_receive_maximum: int = Field(1000, ge=1, le=65535)
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
    # How long the writer waits for more messages before a write; 0 writes whatever has arrived
    # (batches then grow by themselves under load, up to ingest_batch_max lines).
    ingest_linger_s: float = Field(0.0, ge=0, le=5)
    ingest_metrics_port: int = Field(0, ge=0, le=65535)  # 0: no metrics listener of its own
    ingest_qc: bool = True

    # --- helper "stack" (issue 8 part 3): InfluxDB provisioning ---
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
    # --- API surface (issue 8 part 8; helper "apisurface") --------------------------------
    # /docs serves Swagger UI from vendored files (api/static/vendor/swagger-ui); false: no /docs.
    api_docs: bool = True
    # Send Strict-Transport-Security on every response. Set it when the API is only reachable
    # through a TLS-terminating proxy; a request that reached the API as https (TLS at uvicorn,
    # or X-Forwarded-Proto from a trusted proxy) gets the header either way.
    api_hsts: bool = False
    # Cache-Control max-age of public data answers (/v1/...); health, metrics and the live
    # stream are always no-store.
    api_data_max_age_s: int = Field(10, ge=0, le=86_400)
    # --- end API surface -------------------------------------------------------------------


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
