"""Encryption at rest in intake (intake.crypto): what is stored opens only with the case's key, nowhere else."""

import base64
import json
import os
from uuid import uuid4

import pytest
from intake.crypto import (
    Keyring,
    SealedCase,
    UndecryptableField,
    UnknownKek,
    open_case,
    seal,
    seal_case,
    unseal,
)

VICTIM = {"name": "Canary Kim", "phone": "+82 10-1234-5678", "email": "canary@example.org"}
SUMMARY = "Assaulted near home; fears the offender knows the address."


def keyring(*ids: str) -> Keyring:
    return Keyring.parse(",".join(Keyring.generate(i) for i in ids))


def test_a_case_round_trips_and_nothing_stored_shows_the_plaintext() -> None:
    keys, case_id = keyring("k1"), uuid4()
    sealed = seal_case(keys, case_id, VICTIM, SUMMARY)
    stored = json.dumps(sealed.victim) + (sealed.summary or "") + sealed.key.blob.hex()
    for value in [*VICTIM.values(), SUMMARY, "Canary"]:
        assert value not in stored
    assert set(sealed.victim) == set(VICTIM)  # field by field
    assert open_case(keys, case_id, sealed) == (VICTIM, SUMMARY)


def test_equal_values_encrypt_differently() -> None:
    keys = keyring("k1")
    first, second = seal_case(keys, uuid4(), VICTIM, None), seal_case(keys, uuid4(), VICTIM, None)
    assert first.victim["name"] != second.victim["name"]
    data_key = os.urandom(32)
    case_id = uuid4()
    assert seal(data_key, case_id, "victim.name", "x") != seal(data_key, case_id, "victim.name", "x")


def test_a_ciphertext_moved_to_another_field_or_case_or_altered_does_not_open() -> None:
    data_key, case_id = os.urandom(32), uuid4()
    token = seal(data_key, case_id, "victim.name", "Canary Kim")
    with pytest.raises(UndecryptableField):
        unseal(data_key, case_id, "victim.phone", token)
    with pytest.raises(UndecryptableField):
        unseal(data_key, uuid4(), "victim.name", token)
    blob = bytearray(base64.urlsafe_b64decode(token))
    blob[-1] ^= 1
    with pytest.raises(UndecryptableField):
        unseal(data_key, case_id, "victim.name", base64.urlsafe_b64encode(bytes(blob)).decode())


def test_the_wrapped_data_key_is_bound_to_its_case() -> None:
    keys, case_id = keyring("k1"), uuid4()
    sealed = seal_case(keys, case_id, VICTIM, SUMMARY)
    with pytest.raises(UndecryptableField):
        keys.unwrap(sealed.key, uuid4())


def test_another_kek_cannot_open_a_case() -> None:
    case_id = uuid4()
    sealed = seal_case(keyring("k1"), case_id, VICTIM, SUMMARY)
    with pytest.raises(UndecryptableField):
        open_case(keyring("k1"), case_id, sealed)  # same id, different key
    with pytest.raises(UnknownKek, match="'k1'"):
        open_case(keyring("k2"), case_id, sealed)


def test_rotation_rewraps_the_data_key_so_the_old_kek_can_go() -> None:
    old_entry, new_entry = Keyring.generate("k1"), Keyring.generate("k2")
    before = Keyring.parse(old_entry)
    case_id = uuid4()
    sealed = seal_case(before, case_id, VICTIM, SUMMARY)
    during = Keyring.parse(f"{new_entry},{old_entry}")  # the new key first: current
    assert during.current == "k2" and during.ids == ["k2", "k1"]
    rewrapped = during.rewrap(sealed.key, case_id)
    assert rewrapped.kek_id == "k2" and during.rewrap(rewrapped, case_id) is rewrapped
    after = Keyring.parse(new_entry)  # the old key dropped
    rotated = SealedCase(sealed.victim, sealed.summary, rewrapped)
    assert open_case(after, case_id, rotated) == (VICTIM, SUMMARY)  # the data itself was not re-encrypted
    with pytest.raises(UnknownKek):
        open_case(after, case_id, sealed)


def test_bad_configuration_is_refused_without_showing_the_key() -> None:
    secret = base64.urlsafe_b64encode(b"sixteen byte key").decode()
    with pytest.raises(ValueError, match="must be 32 bytes") as refused:
        Keyring.parse(f"k1={secret}")
    assert secret not in str(refused.value)
    for text in ("", "no-equals-sign", "=abc"):
        with pytest.raises(ValueError):
            Keyring.parse(text)


def test_a_victim_field_without_an_encryption_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="no encryption rule"):
        seal_case(keyring("k1"), uuid4(), {**VICTIM, "birthday": "2000-01-01"}, None)


def test_intake_settings_hide_the_key_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from intake.settings import IntakeSettings
    from pydantic import ValidationError

    monkeypatch.setenv("CASE_KEYS", "k1=c2l4dGVlbiBieXRlIGtleQ")
    with pytest.raises(ValidationError) as refused:
        IntakeSettings()
    assert "c2l4dGVlbiBieXRlIGtleQ" not in str(refused.value)
    monkeypatch.setenv("CASE_KEYS", Keyring.generate("k9"))
    keys = IntakeSettings().keyring()
    assert keys is not None and keys.current == "k9"
