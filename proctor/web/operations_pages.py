"""The operations page: workers and queue backlog, Flower, the seat settings, an exam's archive
and report."""
from __future__ import annotations
