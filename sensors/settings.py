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
    # The API's own broker credentials for the live stream (read-only in deploy/meltemi.acl).
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

    # --- issue 8 (helper "ingest"): a bounded cost for every message --------------------------
    # Per-station token bucket, counted in readings (a message costs max(1, its readings)).
    # The burst lets a day of buffered readings (8,640 at 10 s, replayed in arrays of 500) and
    # the ingest benchmark (2,000 single messages per station at full speed) through untouched;
    # the refill (50x a 10-s station) stops a station sending thousands per second. 0 disables.
    ingest_rate_burst: int = Field(10_000, ge=0)
    ingest_rate_per_s: float = Field(5.0, gt=0)
    # One rate_exceeded record per station per this interval, carrying the count.
    ingest_rate_record_interval_s: float = Field(60.0, gt=0)
    # Retention of the `quarantine` retention policy (created at start when allowed).
    quarantine_retention_days: int = Field(90, ge=1)
    # How often the ingester counts the quarantine's records for /metrics (one count query).
    ingest_quarantine_count_interval_s: float = Field(60.0, gt=0)


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
