"""One student of an exam: the detail page (presence timeline, login history, violations and
screenshots, the recording player, the merge report, merging again) and the media it shows."""
from __future__ import annotations
