from pathlib import Path

from kit.settings import ServiceSettings
from pydantic import Field


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    db_schema: str = "routing"
    http_port: int = 8002
    catalogue_dir: Path = Path("catalogue/agencies")
    rules_file: Path | None = None  # default: rules.toml beside the agencies' folder
    # How often needs no agency could take are tried again (also at once when an agency reports places).
    pending_retry_seconds: float = Field(default=300.0, gt=0)

    @property
    def rules_path(self) -> Path:
        return self.rules_file or self.catalogue_dir.parent / "rules.toml"
