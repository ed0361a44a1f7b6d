"""Scratch files a merge writes beside its output."""
from __future__ import annotations

import secrets
from pathlib import Path

from ..storage import TMP_PREFIX, discard


class _TempFiles:
    """Names for scratch files beside the output, all removed when the merge ends."""

    def __init__(self, output: Path):
        self.directory = output.parent
        # The output's name tells an operator whose leftovers a crashed merge left behind.
        self.prefix = f"{TMP_PREFIX}{output.stem[:60]}-{secrets.token_hex(4)}"
        self.paths: list[Path] = []

    def new(self, role: str, suffix: str = "") -> Path:
        path = self.directory / f"{self.prefix}-{len(self.paths)}-{role}{suffix}"
        self.paths.append(path)
        return path

    def cleanup(self) -> None:
        for path in self.paths:
            discard(path)
