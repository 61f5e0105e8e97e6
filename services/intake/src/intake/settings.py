from datetime import timedelta
from pathlib import Path

from kit.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator
from schemas.vocab import CrimeType

from .crypto import Keyring


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    db_schema: str = "intake"
    http_port: int = 8001
    routing_url: str = "http://127.0.0.1:8002"
    catalogue_dir: Path = Path("catalogue/agencies")  # the consent notices recorded in the consent ledger
    # Key-encryption keys for the cases' data keys (intake.crypto): `id=<base64url 32 bytes>,...`, the first current.
    # Never in the repository: `./dev up` makes one per state folder. Without it intake stores no case (503).
    case_keys: SecretStr | None = None
    # How long a closed case's personal data is kept before it is destroyed (PIPA Art. 21), in ISO 8601 (`P1095D`),
    # and per crime type where the law asks for another period (`{"child_abuse": "P3650D"}`).
    case_retention: timedelta = timedelta(days=3 * 365)
    case_retention_by_crime_type: dict[CrimeType, timedelta] = Field(default_factory=dict)
    retention_poll_seconds: float = Field(default=60.0, gt=0)

    @field_validator("case_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            Keyring.parse(value.get_secret_value())  # a broken CASE_KEYS stops the start (the error shows no key)
        return value

    def keyring(self) -> Keyring | None:
        return None if self.case_keys is None else Keyring.parse(self.case_keys.get_secret_value())
