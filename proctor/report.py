"""The exam report: one row per student (roster and sessions) with presence spans, logins,
violations, and the recording's duration and gaps, as CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from sqlalchemy import select

from .clock import utcnow
from .db import engine
from .exams import get_exam_row
from .schema import (
    archive_items,
    login_events,
    presence_events,
    recordings,
    roster,
    screenshots,
    segments,
    sessions,
    violations,
)

REPORT_COLUMNS = [
    "student_id", "name", "on_roster", "session_id", "state", "joined_at", "finished_at",
    "presence_spans", "online_seconds", "logins", "flagged_logins", "client_addrs",
    "violations", "violation_reasons", "screenshots", "segments",
    "recording_status", "recording_duration_s", "recording_gaps", "archived_to",
]


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def report_csv(exam_id: int) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    for row in report_rows(exam_id):
        writer.writerow({name: inert(value) for name, value in row.items()})
    return out.getvalue()


def inert(value):
    """Text a student wrote (a violation reason, a name) as a spreadsheet shows it, never runs it:
    a leading quote makes the cell text. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_rows(exam_id: int) -> list[dict]:
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        names = dict(conn.execute(select(roster.c.student_id, roster.c.name).where(roster.c.exam_id == exam_id)).all())
        sess = {r.student_id: r for r in conn.execute(select(sessions).where(sessions.c.exam_id == exam_id))}
        facts = _session_facts(conn, exam_id, [s.id for s in sess.values()])
    rows = []
    for student_id in sorted(set(names) | set(sess)):
        s = sess.get(student_id)
        row = {"student_id": student_id, "name": names.get(student_id) or "", "on_roster": student_id in names}
        if s is not None:
            row.update(_session_columns(s, facts))
        rows.append(row)
    return rows


def _session_facts(conn, exam_id: int, sids: list[int]) -> dict:
    def grouped(query) -> dict:
        out: dict = {}
        for r in conn.execute(query):
            out.setdefault(r.session_id, []).append(r)
        return out

    return {
        "presence": grouped(select(presence_events).where(presence_events.c.session_id.in_(sids))
                            .order_by(presence_events.c.at, presence_events.c.id)),
        "logins": grouped(select(login_events).where(login_events.c.exam_id == exam_id)),
        "violations": grouped(select(violations).where(violations.c.session_id.in_(sids)).order_by(violations.c.id)),
        "screenshots": grouped(select(screenshots.c.session_id).where(screenshots.c.session_id.in_(sids))),
        "segments": grouped(select(segments.c.session_id).where(segments.c.session_id.in_(sids))),
        "recordings": {r.session_id: r for r in conn.execute(select(recordings).where(recordings.c.session_id.in_(sids)))},
        "archived": {r.session_id: r.dest for r in conn.execute(
            select(archive_items.c.session_id, archive_items.c.dest).where(
                archive_items.c.session_id.in_(sids), archive_items.c.kind == "recording"))},
    }


def _session_columns(s, facts: dict) -> dict:
    spans = presence_spans(facts["presence"].get(s.id, []), s.finished_at or utcnow())
    logins = facts["logins"].get(s.id, [])
    found = facts["violations"].get(s.id, [])
    rec = facts["recordings"].get(s.id)
    return {
        "session_id": s.id,
        "state": s.state,
        "joined_at": s.joined_at.isoformat(),
        "finished_at": s.finished_at.isoformat() if s.finished_at else "",
        "presence_spans": "; ".join(f"{a.isoformat()}/{b.isoformat()}" for a, b in spans),
        "online_seconds": round(sum((b - a).total_seconds() for a, b in spans), 1),
        "logins": len([e for e in logins if e.kind in ("login", "rejoin")]),
        "flagged_logins": len([e for e in logins if e.flagged]),
        "client_addrs": " ".join(sorted({e.client_addr for e in logins if e.client_addr})),
        "violations": len(found),
        "violation_reasons": " | ".join(v.reason for v in found),
        "screenshots": len(facts["screenshots"].get(s.id, [])),
        "segments": len(facts["segments"].get(s.id, [])),
        "recording_status": rec.status if rec else "",
        "recording_duration_s": round(rec.duration, 2) if rec and rec.duration is not None else "",
        "recording_gaps": " ".join(str(g) for g in (rec.gaps or [])) if rec else "",
        "archived_to": facts["archived"].get(s.id, ""),
    }


def presence_spans(events, end: datetime) -> list[tuple[datetime, datetime]]:
    """Online spans from the online/offline events; a span still open ends at ``end``."""
    spans, since = [], None
    for e in events:
        if e.kind == "online" and since is None:
            since = e.at
        elif e.kind == "offline" and since is not None:
            spans.append((since, e.at))
            since = None
    if since is not None:
        spans.append((since, max(end, since)))
    return spans
