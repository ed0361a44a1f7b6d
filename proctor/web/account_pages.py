"""Staff accounts: an administrator creates, changes and removes them."""
from __future__ import annotations
