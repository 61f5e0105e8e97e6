"""Encryption at rest for a case's personal data: envelope encryption, field by field, with AES-256-GCM.

Each case has a data key of its own. It encrypts every personal field separately (the victim's name, phone,
e-mail, address, contact rules, and the summary), each under a fresh nonce and bound to its case and field name
(associated data), so a ciphertext copied to another case or field does not open. The data key is stored only
wrapped (AES-GCM again) by a key-encryption key (KEK) from configuration, under the KEK's id: rotating the KEK
re-wraps the small data keys, never the data. Erasing a case destroys its data key (crypto-shredding).
Pure: no I/O; the keys come from the settings and the rows from storage.
"""

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
# The victim's fields kept encrypted; any other victim field is refused rather than stored in the clear.
VICTIM_FIELDS = ("name", "phone", "email", "address", "contact_rules")
SUMMARY = "summary"


class CaseKeyError(Exception):
    """Base for key problems; the message never carries key material."""


class UnknownKek(CaseKeyError):
    def __init__(self, kek_id: str) -> None:
        super().__init__(f"no key-encryption key {kek_id!r} is configured (CASE_KEYS)")
        self.kek_id = kek_id


class UndecryptableField(CaseKeyError):
    """The ciphertext does not open under this case's data key: tampered, moved, or from another key."""


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes  # nonce || AES-GCM(KEK, data key)


class Keyring:
    """The key-encryption keys by id; `current` wraps new data keys and is the target of a rotation."""

    def __init__(self, keks: Mapping[str, bytes], current: str) -> None:
        if current not in keks:
            raise ValueError(f"the current key id {current!r} is not among the configured keys")
        for kek_id, kek in keks.items():
            if len(kek) != KEY_BYTES:
                raise ValueError(f"key-encryption key {kek_id!r} must be {KEY_BYTES} bytes, not {len(kek)}")
        self._keks = dict(keks)
        self.current = current

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        """`id=<base64url of 32 bytes>,id2=...`, the first one current (CASE_KEYS); older ids only unwrap."""
        keks: dict[str, bytes] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            kek_id, sep, encoded = part.partition("=")
            if not sep or not kek_id.strip():
                raise ValueError("CASE_KEYS must be id=key pairs separated by commas")
            try:
                keks[kek_id.strip()] = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
            except (binascii.Error, ValueError):
                raise ValueError(f"CASE_KEYS: the key {kek_id.strip()!r} is not base64") from None
        if not keks:
            raise ValueError("CASE_KEYS names no key")
        return cls(keks, next(iter(keks)))

    @staticmethod
    def generate(kek_id: str) -> str:
        """A new CASE_KEYS entry: `kek_id=<random 32 bytes, base64url>`."""
        return f"{kek_id}={base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip('=')}"

    @property
    def ids(self) -> list[str]:
        return list(self._keks)

    def new_data_key(self) -> bytes:
        return AESGCM.generate_key(bit_length=KEY_BYTES * 8)

    def wrap(self, data_key: bytes, case_id: UUID) -> WrappedKey:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keks[self.current]).encrypt(nonce, data_key, _key_context(case_id, self.current))
        return WrappedKey(self.current, nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, case_id: UUID) -> bytes:
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise UnknownKek(wrapped.kek_id)
        try:
            return AESGCM(kek).decrypt(
                wrapped.blob[:NONCE_BYTES], wrapped.blob[NONCE_BYTES:], _key_context(case_id, wrapped.kek_id)
            )
        except InvalidTag:
            raise UndecryptableField(f"the data key of case {case_id} does not open under {wrapped.kek_id!r}") from None

    def rewrap(self, wrapped: WrappedKey, case_id: UUID) -> WrappedKey:
        """The same data key wrapped by the current KEK (a rotation step); unchanged if it already is."""
        if wrapped.kek_id == self.current:
            return wrapped
        return self.wrap(self.unwrap(wrapped, case_id), case_id)


def _key_context(case_id: UUID, kek_id: str) -> bytes:
    return b"onestop/case-key/" + case_id.bytes + kek_id.encode()


def _field_context(case_id: UUID, field: str) -> bytes:
    return b"onestop/case-field/" + case_id.bytes + field.encode()


def seal(data_key: bytes, case_id: UUID, field: str, value: Any) -> str:
    """One field's value (any JSON value) encrypted: base64url of nonce || ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    sealed = AESGCM(data_key).encrypt(nonce, plaintext, _field_context(case_id, field))
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(data_key: bytes, case_id: UUID, field: str, token: str) -> Any:
    blob = base64.urlsafe_b64decode(token)
    try:
        plaintext = AESGCM(data_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _field_context(case_id, field))
    except InvalidTag:
        raise UndecryptableField(f"the field {field} of case {case_id} does not open") from None
    return json.loads(plaintext)


@dataclass(frozen=True)
class SealedCase:
    """What storage keeps of a case's personal data: each field encrypted, and the wrapped data key."""

    victim: dict[str, str]  # field name -> sealed value (absent fields are absent)
    summary: str | None
    key: WrappedKey


def seal_case(keyring: Keyring, case_id: UUID, victim: Mapping[str, Any], summary: str | None) -> SealedCase:
    unknown = sorted(set(victim) - set(VICTIM_FIELDS))
    if unknown:
        raise ValueError(f"victim fields {unknown} have no encryption rule")
    data_key = keyring.new_data_key()
    return SealedCase(
        victim={field: seal(data_key, case_id, f"victim.{field}", value) for field, value in victim.items()},
        summary=None if summary is None else seal(data_key, case_id, SUMMARY, summary),
        key=keyring.wrap(data_key, case_id),
    )


def open_case(keyring: Keyring, case_id: UUID, sealed: SealedCase) -> tuple[dict[str, Any], str | None]:
    """The victim's fields and the summary in the clear."""
    data_key = keyring.unwrap(sealed.key, case_id)
    victim = {field: unseal(data_key, case_id, f"victim.{field}", token) for field, token in sealed.victim.items()}
    summary = None if sealed.summary is None else unseal(data_key, case_id, SUMMARY, sealed.summary)
    return victim, summary
