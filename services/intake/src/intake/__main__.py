from pathlib import Path

from kit.cli import service_main

from .keys import commands
from .main import create_app
from .settings import IntakeSettings

settings = IntakeSettings()
service_main(settings, create_app, Path(__file__).parent / "migrations", commands(settings))  # type: ignore[arg-type]
