"""The command-line exam client: a real client of the token API (``python -m proctor.client``).

A front door of its own, on the students' side: it imports nothing of the server but foundation
modules. One student is a ``student.Student``: it joins, heartbeats in the background, records
numbered segments with FFmpeg (``recorder``) into a spool directory on disk (``spool``), uploads
each one until the server acknowledges it (``connection``: retries with backoff and jitter,
Retry-After honoured), and finishes. ``--students N`` runs N of the same ``Student`` in one
process (``fleet``); ``report`` shows progress and the closing summary.
"""
