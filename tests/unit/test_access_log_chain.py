"""The access log's keyed chain and signed checkpoints, without a database: what `verify` finds, row by row."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from kit.access_log import (
    BROKEN,
    GENESIS,
    HMAC_SHA256,
    REWRITTEN,
    SHA256,
    TRUNCATED,
    Access,
    AccessLog,
    ChainCheck,
    Checkpoint,
    CheckpointStore,
    chain_key,
    derive_key,
    row_hash,
)
from kit.settings import ServiceSettings
from pydantic import SecretStr, ValidationError

KEY = derive_key("unit-test-access-log-key-of-32-bytes!")
AT = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def chain(schemes: list[str], key: bytes = KEY, start: tuple[int, str] = (0, GENESIS)) -> list[dict[str, Any]]:
    """Rows as `kit.access_log` writes them (`sha256` ones as written before the key), chained from `start`."""
    seq, previous = start
    rows = []
    for scheme in schemes:
        seq += 1
        access = Access("case.read", uuid4())
        at = AT + timedelta(seconds=seq)
        actor = f"caseworker:cw-{seq}"
        digest = row_hash(
            previous, seq, at, actor, "caseworker", "10.0.0.1", access, key if scheme == HMAC_SHA256 else None
        )
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor": actor,
                "role": "caseworker",
                "client": "10.0.0.1",
                "action": access.action,
                "case_id": access.case_id,
                "referral_id": None,
                "previous_hash": previous,
                "hash": digest,
                "scheme": scheme,
            }
        )
        previous = digest
    return rows


def rehash(rows: list[dict[str, Any]], from_index: int, scheme: str, key: bytes | None) -> None:
    """What someone with write access does after changing a row: recompute it and every later row."""
    previous = rows[from_index - 1]["hash"] if from_index else GENESIS
    for row in rows[from_index:]:
        access = Access(row["action"], row["case_id"], row["referral_id"])
        row["previous_hash"] = previous
        row["hash"] = row_hash(previous, row["seq"], row["at"], row["actor"], row["role"], row["client"], access, key)
        row["scheme"] = scheme
        previous = row["hash"]


def check(rows: list[dict[str, Any]], checkpoint: Checkpoint | None = None, **start: Any) -> ChainCheck:
    walk = ChainCheck(KEY, checkpoint=checkpoint, **start)
    if walk.begin():
        for row in rows:
            if not walk.step(row):
                return walk
        walk.finish()
    return walk


def head(rows: list[dict[str, Any]], schema: str = "notify", key: bytes = KEY) -> Checkpoint:
    return Checkpoint.signed(key, schema, rows[-1]["seq"], rows[-1]["hash"], AT)


def test_a_keyed_hash_is_not_the_plain_sha256_and_depends_on_the_key() -> None:
    access = Access("case.read", uuid4())
    plain = row_hash(GENESIS, 1, AT, "caseworker:cw-1", "caseworker", "10.0.0.1", access)
    keyed = row_hash(GENESIS, 1, AT, "caseworker:cw-1", "caseworker", "10.0.0.1", access, KEY)
    other = row_hash(GENESIS, 1, AT, "caseworker:cw-1", "caseworker", "10.0.0.1", access, derive_key("x" * 32))
    assert len({plain, keyed, other}) == 3 and all(len(h) == 64 for h in (plain, keyed, other))


def test_the_plain_scheme_is_the_sha256_rows_were_written_with_before() -> None:
    """Rows already in the tables were hashed so; they must still verify."""
    access = Access("case.read", uuid4())
    fields = {
        "previous": GENESIS,
        "seq": 1,
        "at": AT.isoformat(),
        "actor": "a",
        "role": "auditor",
        "client": "c",
        "action": "case.read",
        "case_id": str(access.case_id),
        "referral_id": None,
    }
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert row_hash(GENESIS, 1, AT, "a", "auditor", "c", access) == expected


def test_the_key_comes_from_access_log_key_else_from_auth_secret_and_is_never_shown() -> None:
    base = {"service_name": "t", "db_schema": "t", "http_port": 1}
    both = ServiceSettings(**base, auth_secret="a" * 32, access_log_key="k" * 32)  # type: ignore[arg-type]
    only_auth = ServiceSettings(**base, auth_secret="a" * 32)  # type: ignore[arg-type]
    assert chain_key(both) == derive_key("k" * 32) != chain_key(only_auth) == derive_key("a" * 32)
    assert chain_key(ServiceSettings(**base)) is None  # type: ignore[arg-type]
    assert derive_key("a" * 32) != ("a" * 32).encode()  # derived under a fixed label, not the secret itself
    assert "k" * 32 not in repr(both) and "k" * 32 not in str(both.model_dump())
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(**base, access_log_key="short-and-secret")  # type: ignore[arg-type]
    assert "ACCESS_LOG_KEY must be at least 32 bytes" in str(refused.value)
    assert "short-and-secret" not in str(refused.value)


def test_an_access_log_without_a_key_refuses_to_append_or_verify_but_may_purge() -> None:
    log = AccessLog(retention_days=1)
    assert not log.keyed
    with pytest.raises(RuntimeError, match="ACCESS_LOG_KEY"):
        _ = log.key


def test_old_unkeyed_rows_then_keyed_rows_verify() -> None:
    rows = chain([SHA256] * 3 + [HMAC_SHA256] * 3)
    walk = check(rows)
    assert walk.intact and walk.checked == 6 and walk.answer()["first_broken_seq"] is None


def test_a_changed_field_breaks_the_chain_at_that_row() -> None:
    rows = chain([SHA256, HMAC_SHA256, HMAC_SHA256, HMAC_SHA256])
    rows[2]["client"] = "203.0.113.7"
    walk = check(rows)
    assert (walk.reason, walk.first_broken_seq, walk.checked) == (BROKEN, 3, 2)


def test_a_keyed_row_recomputed_with_the_plain_sha256_is_a_break() -> None:
    rows = chain([HMAC_SHA256] * 5)
    rows[2]["client"] = "203.0.113.7"
    rehash(rows, 2, HMAC_SHA256, None)  # claims to be keyed, but whoever wrote it had no key
    assert (check(rows).reason, check(rows).first_broken_seq) == (BROKEN, 3)


def test_an_unkeyed_row_after_a_keyed_one_is_a_break_even_when_it_chains() -> None:
    rows = chain([SHA256, HMAC_SHA256, HMAC_SHA256, HMAC_SHA256])
    rows[2]["client"] = "203.0.113.7"
    rehash(rows, 2, SHA256, None)  # a consistent chain of plain hashes from there on
    walk = check(rows)
    assert (walk.reason, walk.first_broken_seq) == (BROKEN, 3)


def test_an_unknown_scheme_is_a_break() -> None:
    rows = chain([HMAC_SHA256] * 2)
    rows[1]["scheme"] = "none"
    assert check(rows).first_broken_seq == 2


def test_a_keyed_anchor_forbids_unkeyed_rows_after_it() -> None:
    purged = chain([HMAC_SHA256] * 3)
    rest = chain([SHA256], start=(3, purged[-1]["hash"]))
    assert check(rest, seq=3, previous=purged[-1]["hash"], keyed=True).reason == BROKEN
    assert check(rest, seq=3, previous=purged[-1]["hash"], keyed=False).intact  # an unkeyed anchor: legacy rows


def test_every_row_rewritten_as_plain_sha256_is_found_by_the_checkpoint() -> None:
    """A rewrite from the first row on leaves a consistent unkeyed chain; the signed head no longer matches."""
    rows = chain([HMAC_SHA256] * 6)
    checkpoint = head(rows[:4])
    rows[1]["client"] = "203.0.113.7"
    rehash(rows, 0, SHA256, None)
    assert check(rows).intact  # the chain alone cannot tell
    walk = check(rows, checkpoint)
    assert (walk.reason, walk.first_broken_seq) == (REWRITTEN, 4)


def test_the_newest_rows_cut_off_are_found_by_the_checkpoint() -> None:
    rows = chain([HMAC_SHA256] * 6)
    checkpoint = head(rows)
    walk = check(rows[:4], checkpoint)
    assert (walk.reason, walk.first_broken_seq, walk.checked) == (TRUNCATED, 5, 4)
    assert walk.answer() == {
        "intact": False,
        "rows_checked": 4,
        "first_broken_seq": 5,
        "reason": TRUNCATED,
        "checkpoint": {"seq": 6, "at": AT.isoformat()},
    }
    assert check(rows, checkpoint).intact
    assert check(rows + chain([HMAC_SHA256], start=(6, rows[-1]["hash"])), checkpoint).intact  # rows after it: fine


def test_a_checkpoint_at_the_anchor_is_held_against_the_anchor() -> None:
    rows = chain([HMAC_SHA256] * 4)
    checkpoint = head(rows[:2])
    assert check(rows[2:], checkpoint, seq=2, previous=rows[1]["hash"], keyed=True).intact
    walk = check(rows[2:], checkpoint, seq=2, previous="0" * 64, keyed=True)
    assert (walk.reason, walk.first_broken_seq) == (REWRITTEN, 2)
    # A checkpoint older than the anchor (its row purged since) cannot be compared, and is no break.
    assert check(rows[3:], checkpoint, seq=3, previous=rows[2]["hash"], keyed=True).intact


def test_a_checkpoint_is_signed_over_its_schema_seq_hash_and_time() -> None:
    checkpoint = Checkpoint.signed(KEY, "notify", 7, "ab" * 32, AT)
    assert checkpoint.valid(KEY) and not checkpoint.valid(derive_key("y" * 32))
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    for change in ({"seq": 8}, {"hash": "cd" * 32}, {"schema": "intake"}, {"at": "2030-01-01T00:00:00+00:00"}):
        forged = Checkpoint(**{**json.loads(checkpoint.to_json()), **change})
        assert not forged.valid(KEY), change
    for text in ("", "[]", '{"seq": 1}', json.dumps({**json.loads(checkpoint.to_json()), "seq": "7"})):
        with pytest.raises(ValueError):
            Checkpoint.from_json(text)


def test_checkpoints_in_a_folder_replace_the_last_atomically(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    assert store.latest("notify") is None
    first = Checkpoint.signed(KEY, "notify", 1, "ab" * 32, AT)
    second = Checkpoint.signed(KEY, "notify", 2, "cd" * 32, AT)
    store.save(first)
    store.save(second)
    store.save(Checkpoint.signed(KEY, "intake", 9, "ef" * 32, AT))
    assert store.latest("notify") == second and store.latest("intake") is not None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["intake.json", "notify.json"]
    assert CheckpointStore(tmp_path / "checkpoints").latest("notify") == second  # another process reads it
    (tmp_path / "checkpoints" / "notify.json").write_text("garbage")
    with pytest.raises(ValueError):
        store.latest("notify")
    with pytest.raises(ValueError):
        store.latest("../etc")


def test_without_a_folder_checkpoints_stay_in_the_process_and_are_shared_by_its_access_logs() -> None:
    store = CheckpointStore()
    store.save(Checkpoint.signed(KEY, "notify", 1, "ab" * 32, AT))
    assert store.latest("notify") is not None and store.latest("intake") is None
    settings = ServiceSettings(service_name="t", db_schema="t", http_port=1, auth_secret=SecretStr("a" * 32))
    assert AccessLog.for_service(settings).checkpoints is AccessLog.for_service(settings).checkpoints
