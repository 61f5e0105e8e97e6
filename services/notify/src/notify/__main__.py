from pathlib import Path

from kit.cli import service_main

from .main import create_app
from .settings import NotifySettings

service_main(NotifySettings(), create_app, Path(__file__).parent / "migrations")  # type: ignore[arg-type]
