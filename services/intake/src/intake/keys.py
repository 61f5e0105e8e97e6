"""`python -m intake rotate-keys`: re-wrap every case's data key under the current key-encryption key.

Rotation: put a new key first in CASE_KEYS (keeping the old ones after it), restart intake so new cases use it,
run this, then drop the old keys from CASE_KEYS. `python -m intake new-key ID` prints a fresh CASE_KEYS entry.
"""

import argparse
import asyncio

from kit.cli import Command
from kit.db import create_pool

from .cases import rotate_case_keys
from .crypto import Keyring
from .settings import IntakeSettings


def commands(settings: IntakeSettings) -> list[Command]:
    def rotate(_: argparse.Namespace) -> int:
        keyring = settings.keyring()
        if keyring is None:
            print("intake: CASE_KEYS is not set; nothing to rotate to")
            return 2
        rewrapped = asyncio.run(_rotate(settings, keyring))
        print(f"intake: {rewrapped} data key(s) re-wrapped under {keyring.current!r}")
        return 0

    def new_key(args: argparse.Namespace) -> int:
        print(Keyring.generate(args.id))
        return 0

    return [
        Command("rotate-keys", "re-wrap every case's data key under the first key of CASE_KEYS", rotate),
        Command(
            "new-key",
            "print a new CASE_KEYS entry (id=random 32-byte key) to put first in CASE_KEYS",
            new_key,
            _key_id_argument,
        ),
    ]


async def _rotate(settings: IntakeSettings, keyring: Keyring) -> int:
    pool = await create_pool(settings.database_url, settings.db_schema, 2)
    try:
        return await rotate_case_keys(pool, keyring)
    finally:
        await pool.close()


def _key_id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the new key's id, e.g. 2026-11")
