"""Students: the registry (id and name), CSV/Excel import, and the login history.

The registry is what the legacy seat's login form is prefilled from and what an import fills; a
roster (``exams.roster``) says who sits which exam. Login history records every login, rejoin,
logout and refused legacy call with the client address; a second simultaneous login of one
student is flagged so the teacher sees it.
"""
from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from . import redis_client
from .config import settings
from .db import engine, login_events, roster, students, utcnow
from .errors import BadRequest, NotFound, UnsupportedMediaType

STUDENT_ID = re.compile(r"^[\w.@+-]{1,64}$")
MAX_NAME = 200
MAX_ROWS = 100_000
# Header names compared without case, blanks, "_" or "-": "Student ID", "student_id", "studentId".
ID_HEADERS = {"studentid", "id", "student", "studentno", "studentnumber", "number", "学号"}
NAME_HEADERS = {"name", "studentname", "fullname", "姓名"}
XLSX_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-excel",
}
CSV_TYPES = {"text/csv", "text/plain", "application/csv"}


def names_match(expected: str | None, given: str | None) -> bool:
    """Names compared without case and extra blanks; no name on file matches anything."""
    if not expected:
        return True
    norm = lambda s: " ".join((s or "").split()).casefold()  # noqa: E731
    return norm(expected) == norm(given)


# --- registry ----------------------------------------------------------------------------------


def student_dict(row) -> dict:
    return {"student_id": row.student_id, "name": row.name}


def get_student(student_id: str) -> dict:
    """The registry entry, else the name a roster gives; NotFound when neither knows the id."""
    with engine().connect() as conn:
        row = conn.execute(select(students).where(students.c.student_id == student_id)).first()
        if row is not None:
            return student_dict(row)
        name = conn.execute(
            select(roster.c.name).where(roster.c.student_id == student_id).order_by(roster.c.id.desc())
        ).first()
    if name is None:
        raise NotFound(f"student {student_id} is unknown")
    return {"student_id": student_id, "name": name[0]}


def list_students() -> list[dict]:
    with engine().connect() as conn:
        return [student_dict(r) for r in conn.execute(select(students).order_by(students.c.student_id))]


def upsert_students(entries: list[dict]) -> tuple[int, int]:
    """Add or rename students; returns (created, updated)."""
    created = updated = 0
    now = utcnow()
    with engine().begin() as conn:
        known = {
            r.student_id: r.name
            for r in conn.execute(
                select(students.c.student_id, students.c.name).where(
                    students.c.student_id.in_([e["student_id"] for e in entries])
                )
            )
        } if entries else {}
        for e in entries:
            if e["student_id"] not in known:
                conn.execute(insert(students).values(**e, created_at=now, updated_at=now))
                created += 1
            elif e.get("name") and known[e["student_id"]] != e["name"]:
                conn.execute(
                    update(students)
                    .where(students.c.student_id == e["student_id"])
                    .values(name=e["name"], updated_at=now)
                )
                updated += 1
    return created, updated


def delete_student(student_id: str) -> None:
    with engine().begin() as conn:
        if not conn.execute(delete(students).where(students.c.student_id == student_id)).rowcount:
            raise NotFound(f"student {student_id} is not in the registry")


# --- import ------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    accepted: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "accepted": len(self.accepted),
            "rejected": self.rejected,
            "rejected_count": len(self.rejected),
        }


def parse_table(data: bytes, media_type: str, filename: str = "") -> ImportReport:
    """Rows of a CSV or XLSX file checked one by one; nothing is written here."""
    rows = _xlsx_rows(data) if _is_xlsx(data, media_type, filename) else _csv_rows(data, media_type)
    return check_rows(rows)


def _is_xlsx(data: bytes, media_type: str, filename: str) -> bool:
    if media_type in XLSX_TYPES or filename.lower().endswith(".xlsx"):
        return True
    if media_type in CSV_TYPES or filename.lower().endswith(".csv"):
        return False
    if data[:4] == b"PK\x03\x04":  # a zip container: what an .xlsx is
        return True
    if media_type and media_type not in ("application/octet-stream", "multipart/form-data"):
        raise UnsupportedMediaType("import a CSV (text/csv) or an Excel workbook (.xlsx)")
    return False


def _csv_rows(data: bytes, _media_type: str) -> list[list[str]]:
    # Excel saves CSV with a BOM in UTF-8, or in a legacy code page: try UTF-8 first.
    for encoding in ("utf-8-sig", "gb18030", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [row for row in csv.reader(io.StringIO(text), dialect)]


def _xlsx_rows(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as err:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise BadRequest(f"not a readable Excel workbook: {type(err).__name__}", code="invalid_file") from None
    try:
        sheet = book.worksheets[0]
        rows = []
        for values in sheet.iter_rows(values_only=True):
            rows.append(["" if v is None else _cell(v) for v in values])
            if len(rows) > MAX_ROWS + 1:
                break
        return rows
    finally:
        book.close()


def _cell(value) -> str:
    # Spreadsheets store numeric ids as floats: 20230001.0 is the id 20230001.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _columns(header: list[str]) -> tuple[int, int | None] | None:
    names = [re.sub(r"[\s_\-]", "", h.casefold()) for h in header]
    id_col = next((i for i, h in enumerate(names) if h in ID_HEADERS), None)
    if id_col is None:
        return None
    name_col = next((i for i, h in enumerate(names) if h in NAME_HEADERS), None)
    return id_col, name_col


def check_rows(rows: list[list[str]]) -> ImportReport:
    """First row a header naming the columns, or data in the order student_id, name."""
    report = ImportReport()
    if not rows:
        return report
    cols = _columns(rows[0])
    start = 2 if cols else 1
    id_col, name_col = cols or (0, 1)
    data = rows[1:] if cols else rows
    if len(data) > MAX_ROWS:
        raise BadRequest(f"at most {MAX_ROWS} rows per import", code="too_many_rows")
    seen: set[str] = set()
    for number, row in enumerate(data, start=start):
        if not any(c.strip() for c in row):
            continue  # blank lines are not worth a rejection
        entry, reason = _check_row(row, id_col, name_col, seen)
        if reason:
            report.rejected.append({"row": number, "student_id": entry, "reason": reason})
        else:
            seen.add(entry["student_id"])
            report.accepted.append(entry)
    return report


def _check_row(row, id_col, name_col, seen) -> tuple:
    sid = row[id_col].strip() if id_col < len(row) else ""
    name = row[name_col].strip() if name_col is not None and name_col < len(row) else ""
    if not sid:
        return None, "student_id is empty"
    if not STUDENT_ID.match(sid):
        return sid, "student_id may have only letters, digits and . @ + - _ (at most 64)"
    if len(name) > MAX_NAME:
        return sid, f"name is longer than {MAX_NAME} characters"
    if sid in seen:
        return sid, "student_id appears twice in the file; the first row was taken"
    return {"student_id": sid, "name": name or None}, None


def import_table(data: bytes, media_type: str, filename: str = "") -> dict:
    report = parse_table(data, media_type, filename)
    created, updated = upsert_students(report.accepted)
    return {**report.as_dict(), "created": created, "updated": updated, "students": report.accepted}


# --- login history -----------------------------------------------------------------------------

REFUSAL_NOTE_TTL_S = 60


def record_login(exam_id: int, session_id: int, student_id: str, *, resumed: bool, via: str,
                 client_addr: str | None, previous_addr: str | None, last_seen) -> dict:
    """Write a login or rejoin; flag it when another seat of the student was still live."""
    flagged, detail = _second_login(client_addr, previous_addr, last_seen) if resumed else (False, None)
    row = {
        "exam_id": exam_id,
        "session_id": session_id,
        "student_id": student_id,
        "kind": "rejoin" if resumed else "login",
        "via": via,
        "client_addr": client_addr,
        "flagged": flagged,
        "detail": detail,
        "at": utcnow(),
    }
    with engine().begin() as conn:
        conn.execute(insert(login_events).values(**row))
    return row


def _second_login(addr, previous_addr, last_seen) -> tuple[bool, str | None]:
    # A rejoin from the same address is a restarted client; from another address while the first
    # was still heartbeating, it is two machines using one student's identity.
    if previous_addr is None or addr == previous_addr or last_seen is None:
        return False, None
    if utcnow() - last_seen > timedelta(seconds=settings().offline_after_s):
        return False, None
    return True, f"second login while {previous_addr} was online"[:255]


def record_event(exam_id: int, session_id: int | None, student_id: str, kind: str, via: str,
                 client_addr: str | None, *, flagged: bool = False, detail: str | None = None) -> None:
    with engine().begin() as conn:
        conn.execute(
            insert(login_events).values(
                exam_id=exam_id, session_id=session_id, student_id=student_id, kind=kind, via=via,
                client_addr=client_addr, flagged=flagged, detail=(detail or None) and detail[:255],
                at=utcnow(),
            )
        )


def record_refusal(exam_id: int, session_id: int, student_id: str, client_addr: str, detail: str) -> None:
    """A call from an address that is not the seat's: shown to the teacher once a minute at most.

    The note is rate-limited per (session, address) so a flood cannot fill the history table.
    """
    mark = redis_client.key("legacy", "refused", session_id, client_addr)
    if not redis_client.client().set(mark, int(time.time()), nx=True, ex=REFUSAL_NOTE_TTL_S):
        return
    record_event(exam_id, session_id, student_id, "refused", "legacy", client_addr, flagged=True, detail=detail)


def login_history(exam_id: int, student_id: str | None = None, flagged_only: bool = False) -> list[dict]:
    query = select(login_events).where(login_events.c.exam_id == exam_id)
    if student_id:
        query = query.where(login_events.c.student_id == student_id)
    if flagged_only:
        query = query.where(login_events.c.flagged.is_(True))
    with engine().connect() as conn:
        rows = conn.execute(query.order_by(login_events.c.at, login_events.c.id)).all()
    return [
        {
            "id": r.id,
            "student_id": r.student_id,
            "session_id": r.session_id,
            "kind": r.kind,
            "via": r.via,
            "client_addr": r.client_addr,
            "flagged": bool(r.flagged),
            "detail": r.detail,
            "at": r.at.isoformat(),
        }
        for r in rows
    ]

