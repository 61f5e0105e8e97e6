from pathlib import Path

from kit.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    db_schema: str = "routing"
    http_port: int = 8002
    catalogue_dir: Path = Path("catalogue/agencies")
