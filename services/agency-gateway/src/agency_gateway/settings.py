from pathlib import Path

from kit.settings import ServiceSettings
from pydantic import Field


class GatewaySettings(ServiceSettings):
    service_name: str = "agency-gateway"
    db_schema: str = "gateway"
    http_port: int = 8003
    catalogue_dir: Path = Path("catalogue/agencies")
    delivery_attempts: int = Field(default=4, ge=1)
    retry_base_seconds: float = Field(default=0.5, gt=0)
