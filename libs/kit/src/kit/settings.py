"""One typed settings object per service, read from the environment."""

import re
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs; a service subclasses it to add its own fields and defaults."""

    # Settings hold secrets (passwords, keys): a validation error names the field, never shows the value.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    service_name: str
    db_schema: str
    http_host: str = "127.0.0.1"
    http_port: int = Field(ge=1, le=65535)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # SASL on the secured broker (`./dev up --secure-kafka`): one principal per service, allowed only its own topics.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    database_url: str = "postgresql://onestop@127.0.0.1:55432/onestop"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    startup_timeout_seconds: float = Field(default=120.0, gt=0)
    log_level: str = "INFO"
    # How often the sampled gauges (consumer lag, outbox backlog) are refreshed in the background; `/metrics` only
    # reads them, so a scrape answers from memory whatever Kafka or PostgreSQL are doing.
    metrics_refresh_seconds: float = Field(default=5.0, gt=0)
    # How many times one record may fail its handler (not counting outages of PostgreSQL, Kafka or intake) before
    # it is parked in its topic's DLQ and the partition moves on.
    handler_max_attempts: int = Field(default=5, ge=1)
    # A batch consumer (kit/batches.py) handles up to this many waiting records in one transaction.
    consumer_batch_max_records: int = Field(default=200, ge=1, le=10_000)
    # Retention (kit/retention.py), purged in the background every PURGE_INTERVAL_SECONDS. The outbox's sent rows are
    # kept OUTBOX_RETENTION_HOURS, to look at and republish by hand; an unsent row is never purged. An inbox id must
    # stay as long as a duplicate of its event can still come: as long as the record can still be read from its topic
    # (a consumer group reset to the earliest offsets reads it again). The topics take the broker's retention
    # (ensure_topics sets none): Kafka's defaults delete a segment 7 days after its newest record, and roll a segment
    # after at most 7 days, so a record may be read up to about 14 days after it was written. The default keeps ids
    # 30 days; raise it with the topics' retention.
    outbox_retention_hours: float = Field(default=24.0, ge=0)
    inbox_retention_days: float = Field(default=30.0, gt=0)
    purge_interval_seconds: float = Field(default=3600.0, gt=0)

    # Security (issue #8): the bearer tokens' signing secret (never in the repository; `./dev up` makes one per run),
    # request limits, and how long the access log keeps its rows.
    auth_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_per_second: float = Field(default=50.0, gt=0)  # per credential, sustained
    rate_limit_burst: int = Field(default=200, ge=1)  # per credential, at once
    access_log_retention_days: float = Field(default=3 * 365, gt=0)
    # The access log's chain key (32+ bytes, never in the database; without it one is derived from AUTH_SECRET, so
    # rotating AUTH_SECRET would leave the keyed rows unverifiable) and where its signed checkpoints are kept (a file
    # per schema; without a folder, only in the process's memory and its log), taken every so many seconds.
    access_log_key: SecretStr | None = None
    access_log_checkpoint_dir: Path | None = None
    access_log_checkpoint_seconds: float = Field(default=60.0, gt=0)

    def kafka_client_config(self) -> dict[str, Any]:
        """Keyword arguments for every Kafka client of the service (broker, admin, raw aiokafka clients)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_sasl_username,
            "sasl_plain_password": self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None,
        }
        if self.kafka_security_protocol == "SASL_SSL":
            config["ssl_context"] = ssl.create_default_context()
        return config

    @model_validator(mode="after")
    def _sasl_complete(self) -> "ServiceSettings":
        if self.kafka_security_protocol != "PLAINTEXT" and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError("KAFKA_SECURITY_PROTOCOL with SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        return self

    @field_validator("auth_secret", "access_log_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            name = (info.field_name or "secret").upper()
            raise ValueError(f"{name} must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("db_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
            raise ValueError("db_schema must be a lower-case SQL identifier")
        return value
