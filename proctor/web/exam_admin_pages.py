"""Changing exams from the console: edit, extend, end now, delete, copy; the roster (pasted or
uploaded) and the student registry."""
from __future__ import annotations
