"""What the student detail page shows, composed from the service functions the API serves: the
student's row of the roster view (``attendance``), the session and its recording
(``sessions.session_view``), the login history (``logins``), violations and screenshots, and the
presence timeline drawn as a chart.

The timeline comes from the presence changes the server records (``presence.history``: the join,
each silence the status check noticed, each return, the finish): online spans as the exam report
counts them (``report.presence_spans``), offline spans what lies between them until the session
finished (or until now, while it is open). A silence is noticed by the status check, so an offline
span begins up to one check after the last heartbeat.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import attendance, exams, logins, presence, report, screenshots, sessions, states, violations
from ..clock import utcnow

TICKS = 6  # time labels under the chart, its two ends included
MIN_WIDTH = 0.3  # percent: a span of seconds in a three-hour exam still shows
MERGE_PENDING = (states.QUEUED, states.WAITING, states.MERGING)  # the page follows these until settled


@dataclass(frozen=True)
class Span:
    """A stretch of the timeline: ``kind`` online or offline, its times, and where it is drawn (percent
    of the chart's width)."""

    kind: str
    start: datetime
    end: datetime
    left: float
    width: float

    @property
    def seconds(self) -> int:
        return round((self.end - self.start).total_seconds())

    @property
    def clock(self) -> str:
        """Its length as h:mm:ss."""
        return f"{self.seconds // 3600}:{self.seconds // 60 % 60:02d}:{self.seconds % 60:02d}"


@dataclass(frozen=True)
class Mark:
    """A moment on the timeline (a login, a restart, a refused call, a violation) and where."""

    kind: str
    at: datetime
    left: float


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    spans: list[Span]
    marks: list[Mark]
    ticks: list[tuple[float, datetime]]

    @property
    def short(self) -> bool:
        """Under ten minutes: its ticks need seconds to differ."""
        return (self.end - self.start).total_seconds() < 600


def student_detail(exam_id: int, student_id: str) -> dict:
    """Everything the page shows of one student of the exam (NotFound for anyone not in it)."""
    exam = exams.exam_detail(exam_id)
    row = attendance.student_attendance(exam_id, student_id)
    detail = {"exam": exam, "student": row, "session": None, "timeline": None, "violations": [],
              "screenshots": [], "logins": logins.login_history(exam_id, student_id)}
    if row["session_id"] is None:
        return detail
    session = sessions.session_view(row["session_id"])
    found = violations.list_violations(session_id=session["id"])
    detail.update(session=session, violations=found, screenshots=screenshots.list_for_session(session["id"]),
                  timeline=timeline(exam, session, detail["logins"], found))
    return detail


def timeline(exam: dict, session: dict, login_lines: list[dict], found: list[dict]) -> Timeline:
    """The chart of the session's presence over the exam: the exam's times, widened to the
    session's when it began earlier or ended later."""
    joined = _time(session["joined_at"])
    end = _time(session["finished_at"]) if session["finished_at"] else utcnow()
    start, stop = min(_time(exam["starts_at"]), joined), max(_time(exam["ends_at"]), end)
    length = max((stop - start).total_seconds(), 1.0)

    def left(at: datetime) -> float:
        return round(min(max((at - start).total_seconds() / length, 0.0), 1.0) * 100, 3)

    def span(kind: str, a: datetime, b: datetime) -> Span:
        return Span(kind, a, b, left(a), max(round(left(b) - left(a), 3), MIN_WIDTH))

    spans = []
    edge = None  # where the previous online span ended: what follows it is offline
    for a, b in report.presence_spans(presence.history(session["id"]), end):
        if edge is not None and a > edge:
            spans.append(span("offline", edge, a))
        spans.append(span("online", a, b))
        edge = b
    if edge is not None and end > edge:
        spans.append(span("offline", edge, end))
    marks = [Mark(line["kind"], _time(line["at"]), left(_time(line["at"]))) for line in login_lines
             if line["session_id"] == session["id"] and line["kind"] in ("login", "rejoin", "refused")]
    marks += [Mark("violation", at, left(at)) for at in
              (_time(v["occurred_at"] or v["received_at"]) for v in found)]
    ticks = [(round(100 * n / (TICKS - 1), 3), start + (stop - start) * n / (TICKS - 1)) for n in range(TICKS)]
    return Timeline(start, stop, [s for s in spans if s.end > s.start], marks, ticks)


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
