"""Codes people read aloud, write on a board and type from paper: exam entry codes and
invitation codes. No 0/O or 1/I/L; case, spaces and the printed dashes do not matter."""
from __future__ import annotations

import hashlib
import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
ENTRY_CODE_LENGTH = 8  # 31^8: about 40 bits, with joins rate-limited per address and per exam
INVITATION_CODE_LENGTH = 12  # about 60 bits: it alone names the student


def new_code(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch not in " -")


def grouped(code: str) -> str:
    """``ABCD-EFGH``: how a code is shown and printed."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def code_hash(code: str) -> str:
    """What is kept of a code that must not be readable from the database (an invitation)."""
    return hashlib.sha256(normalise(code).encode()).hexdigest()
