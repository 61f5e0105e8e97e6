from kit.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    db_schema: str = "intake"
    http_port: int = 8001
    routing_url: str = "http://127.0.0.1:8002"
