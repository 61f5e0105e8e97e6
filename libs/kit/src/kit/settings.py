"""One typed settings object per service, read from the environment."""

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs; a service subclasses it to add its own fields and defaults."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str
    db_schema: str
    http_host: str = "127.0.0.1"
    http_port: int = Field(ge=1, le=65535)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://onestop@127.0.0.1:55432/onestop"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    startup_timeout_seconds: float = Field(default=120.0, gt=0)
    log_level: str = "INFO"

    @field_validator("db_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
            raise ValueError("db_schema must be a lower-case SQL identifier")
        return value
