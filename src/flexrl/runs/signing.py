"""Which files flexrl wrote itself: an HMAC over their hash, under a key that belongs to the user, not a run.

Resuming a training run loads SB3's full zip (it holds the optimiser), and loading an SB3 zip unpickles
code. flexrl therefore resumes only from a zip it saved: at save time it records the zip's SHA-256 and an
HMAC of it (bound to the run's id) under a per-user key kept outside every workspace
(``~/.config/flexrl/checkpoint.key`` unless the caller names another file). A run directory or workspace
copied in from elsewhere carries no key that counts, and a zip swapped after the fact fails the check.
The key is refused unless it is a regular file of exactly 32 bytes, owned by this user, readable by no one
else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

KEY_BYTES = 32


class SigningKeyError(ValueError):
    """The signing key exists but cannot be trusted; the message is one line."""


def default_key_path() -> Path:
    """Where the user's signing key lives by default."""
    return Path.home() / ".config" / "flexrl" / "checkpoint.key"


def _read_key(path: Path) -> bytes:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise SigningKeyError(f"signing key {path} is not a regular file; remove it to make a new one")
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise SigningKeyError(f"signing key {path} must belong to this user with mode 0600; remove it to make a new one")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise SigningKeyError(f"signing key {path} holds {len(key)} bytes, not {KEY_BYTES}; remove it to make a new one")
    return key


def _make_key(path: Path) -> None:
    """Write a fresh key next to ``path`` and link it into place, so no reader ever sees a partial key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
    finally:
        os.unlink(tmp)


def sign(key_path: str | Path, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` under the key at ``key_path`` (made on first use)."""
    path = Path(key_path)
    if not path.exists():
        _make_key(path)
    return hmac.new(_read_key(path), payload.encode(), hashlib.sha256).hexdigest()


def verify(key_path: str | Path, payload: str, signature: object) -> bool:
    """Whether ``signature`` is the HMAC of ``payload`` under the key at ``key_path`` (False without a key)."""
    path = Path(key_path)
    if not path.exists() or not isinstance(signature, str):
        return False
    expected = hmac.new(_read_key(path), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
