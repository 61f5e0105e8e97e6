"""Where the repository and the local stack's state folder are."""

import os
import subprocess
from pathlib import Path

from devstack.errors import DevstackError

_MARKER = Path("deploy") / "kafka" / "pom.xml"


def repo_root() -> Path:
    """The repository root: from this package's location (editable install), else from git."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / _MARKER).is_file():
            return parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DevstackError("cannot find the repository root: run devstack from inside the repository") from exc
    return Path(top)


def default_state_dir() -> Path:
    """`$DEVSTACK_STATE_DIR`, else `<repo>/.state` (git-ignored)."""
    configured = os.environ.get("DEVSTACK_STATE_DIR")
    return Path(configured).resolve() if configured else repo_root() / ".state"
