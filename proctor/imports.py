"""Student lists from CSV, Excel or text files: parsed and checked row by row, then written at once.

A row is refused with its number and the reason; the accepted ones go into the registry (and, when
the caller asks, onto an exam's roster). Nothing is written before everything was checked, the
exam included: a refused import changes nothing.

What an import may cost is bounded by what it is, not by what it claims to be: a workbook's parts
are measured uncompressed before openpyxl opens it (a zip of a few KB can hold gigabytes of XML),
only ``MAX_COLUMNS`` columns are read and only the student id and name are kept of each row, and
the answer lists at most ``MAX_REPORTED`` refused rows (with the count of the others) and quotes
at most ``MAX_QUOTED`` characters of each.

A text roster is what the original server took: one ``student_id name`` per line, separated by
spaces or a tab, the name may have spaces. A line without an id (a name alone, or a first word
that is no id: an id has a digit) gets a generated one (``generated_id``), listed in the report.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable

from openpyxl import load_workbook

from .db import engine
from .errors import BadRequest, TooLarge, UnsupportedMediaType
from .exams import roster_additions, roster_answer
from .students import MAX_NAME, STUDENT_ID, upsert_students

MAX_ROWS = 100_000
MAX_REPORTED = 100  # refused rows listed in an answer; the rest are counted
MAX_QUOTED = 80  # characters of a refused cell quoted back
# A workbook, uncompressed: in all, and any part but a worksheet (which is read as a stream;
# shared strings and styles are loaded whole). A roster of 100,000 students is about a tenth.
MAX_XLSX_EXPANDED = 64 * 1024 * 1024
MAX_XLSX_PART = 16 * 1024 * 1024
MAX_COLUMNS = 32  # where a header may name the id and name columns
# Header names compared without case, blanks, "_" or "-": "Student ID", "student_id", "studentId".
ID_HEADERS = {"studentid", "id", "student", "studentno", "studentnumber", "number", "学号"}
NAME_HEADERS = {"name", "studentname", "fullname", "姓名"}
XLSX_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-excel",
}
CSV_TYPES = {"text/csv", "application/csv"}
# Types that say nothing about the format: the content decides.
UNTYPED = {"", "text/plain", "application/octet-stream", "multipart/form-data"}
ZIP = b"PK\x03\x04"  # what an .xlsx is


@dataclass
class ImportReport:
    accepted: list[dict] = field(default_factory=list)
    accepted_rows: list[int] = field(default_factory=list)  # the row (line) number of each accepted
    rejected: list[dict] = field(default_factory=list)  # the first MAX_REPORTED
    rejected_count: int = 0
    generated: list[dict] = field(default_factory=list)

    def reject(self, row: int, cell: str | None, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append({"row": row, "student_id": cell, "reason": reason})

    def as_dict(self) -> dict:
        return {
            "accepted": len(self.accepted),
            "rejected": self.rejected,
            "rejected_count": self.rejected_count,
            "rejected_unlisted": self.rejected_count - len(self.rejected),
            "generated": self.generated,
        }


def parse_table(data: bytes, media_type: str, filename: str = "") -> ImportReport:
    """Rows of a CSV, XLSX or text file checked one by one; nothing is written here."""
    if _is_xlsx(data, media_type, filename):
        return _xlsx_report(data)
    text = _decode(data)
    return check_rows(_csv_rows(text)) if _is_csv(text, media_type, filename) else parse_roster_text(text)


def _is_xlsx(data: bytes, media_type: str, filename: str) -> bool:
    """By the file name, then the bytes, then the type (Windows browsers send a .csv file as
    application/vnd.ms-excel, so the type alone does not make a workbook)."""
    name = filename.lower()
    if name.endswith(".xlsx") or data[:4] == ZIP:
        return True
    if name.endswith((".csv", ".txt")) or media_type in CSV_TYPES or media_type in UNTYPED:
        return False
    if media_type in XLSX_TYPES:
        return True
    raise UnsupportedMediaType("import a CSV (text/csv), a text roster (text/plain) or an Excel workbook (.xlsx)")


def _is_csv(text: str, media_type: str, filename: str) -> bool:
    """A CSV by name or type; otherwise when its first line has a comma or a semicolon, or names
    its columns between tabs with a tab on every line (a sheet saved as text, columns in any
    order). Anything else is a text roster."""
    if filename.lower().endswith(".csv") or media_type in CSV_TYPES:
        return True
    lines = [line for line in text.splitlines()[:100] if line.strip()]
    if not lines:
        return False
    if "," in lines[0] or ";" in lines[0]:
        return True
    return _columns(lines[0].split("\t")) is not None and all("\t" in line for line in lines)


def _decode(data: bytes) -> str:
    # Excel saves CSV with a BOM in UTF-8, or in a legacy code page: try UTF-8 first.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _csv_rows(text: str) -> Iterable[list[str]]:
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return csv.reader(io.StringIO(text), dialect)


def _xlsx_report(data: bytes) -> ImportReport:
    _check_expanded_size(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as err:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise BadRequest(f"not a readable Excel workbook: {type(err).__name__}", code="invalid_file") from None
    try:
        # A sheet's dimension may claim 16,384 columns: read-only mode pads every row to it.
        values = book.worksheets[0].iter_rows(max_col=MAX_COLUMNS, max_row=MAX_ROWS + 2, values_only=True)
        return check_rows(["" if v is None else _cell(v) for v in row] for row in values)
    except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as err:  # a part missing or broken
        raise BadRequest(f"not a readable Excel workbook: {type(err).__name__}", code="invalid_file") from None
    finally:
        book.close()


def _check_expanded_size(data: bytes) -> None:
    """Refuse a workbook whose parts are too large uncompressed, before anything inflates them.
    (zipfile stops reading a part at its declared size, so the declaration binds.)"""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            parts = book.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise BadRequest(f"not a readable Excel workbook: {type(err).__name__}", code="invalid_file") from None
    if sum(p.file_size for p in parts) > MAX_XLSX_EXPANDED:
        raise TooLarge(f"the workbook is larger than {MAX_XLSX_EXPANDED} bytes uncompressed", code="file_too_large")
    for part in parts:
        if part.file_size > MAX_XLSX_PART and not part.filename.startswith("xl/worksheets/"):
            raise TooLarge(f"the workbook's {part.filename[:80]} is larger than {MAX_XLSX_PART} bytes uncompressed",
                           code="file_too_large")


def _cell(value) -> str:
    # Spreadsheets store numeric ids as floats: 20230001.0 is the id 20230001.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _header_name(cell: str) -> str:
    return re.sub(r"[\s_\-]", "", cell.casefold())


def _columns(header: list[str]) -> tuple[int, int | None] | None:
    names = [_header_name(h) for h in header]
    id_col = next((i for i, h in enumerate(names) if h in ID_HEADERS), None)
    if id_col is None:
        return None
    name_col = next((i for i, h in enumerate(names) if h in NAME_HEADERS), None)
    return id_col, name_col


def check_rows(rows: Iterable[list[str]]) -> ImportReport:
    """First row a header naming the columns, or data in the order student_id, name.

    Rows are read one at a time and only their id and name kept: a row may have many columns.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return ImportReport()
    cols = _columns(first[:MAX_COLUMNS])
    id_col, name_col = cols or (0, 1)
    data = rows if cols else _chained(first, rows)
    kept = [_id_and_name_cells(row, id_col, name_col) for row in islice(data, MAX_ROWS + 1)]
    return _checked(list(enumerate(kept, start=2 if cols else 1)), 0, 1)


def _chained(first: list[str], rest: Iterable[list[str]]) -> Iterable[list[str]]:
    yield first
    yield from rest


def _id_and_name_cells(row: list[str], id_col: int, name_col: int | None) -> list[str]:
    # A blank row stays blank; the other columns are never looked at again.
    return [_cell_at(row, id_col), _cell_at(row, name_col)]


def _cell_at(row: list[str], col: int | None) -> str:
    return row[col] if col is not None and col < len(row) else ""


def _at_most_max_rows(rows: list) -> None:
    if len(rows) > MAX_ROWS:
        raise BadRequest(f"at most {MAX_ROWS} rows per import", code="too_many_rows")


def _checked(numbered_rows: list[tuple[int, list[str]]], id_col: int, name_col: int | None) -> ImportReport:
    _at_most_max_rows(numbered_rows)
    report = ImportReport()
    seen: set[str] = set()
    for number, row in numbered_rows:
        if not any(c.strip() for c in row):
            continue  # blank lines are not worth a rejection
        entry, reason = _check_row(row, id_col, name_col, seen)
        if reason:
            report.reject(number, entry, reason)
        else:
            seen.add(entry["student_id"])
            report.accepted.append(entry)
            report.accepted_rows.append(number)
    return report


def _check_row(row, id_col, name_col, seen) -> tuple:
    sid = row[id_col].strip() if id_col < len(row) else ""
    name = row[name_col].strip() if name_col is not None and name_col < len(row) else ""
    if not sid:
        return None, "student_id is empty"
    if not STUDENT_ID.match(sid):
        return _quoted(sid), "student_id may have only letters, digits and . @ + - _ (at most 64)"
    if len(name) > MAX_NAME:
        return sid, f"name is longer than {MAX_NAME} characters"
    if sid in seen:
        return sid, "student_id appears twice in the file; the first row was taken"
    return {"student_id": sid, "name": name or None}, None


# --- text rosters --------------------------------------------------------------------------------


def parse_roster_text(text: str) -> ImportReport:
    """A text roster checked line by line (numbers are line numbers); nothing is written here."""
    lines = list(enumerate(text.splitlines(), start=1))
    first = next(((n, line) for n, line in lines if line.strip()), None)
    if first and all(_header_name(word) in ID_HEADERS | NAME_HEADERS for word in first[1].split()):
        lines.remove(first)  # a header line such as "学号 姓名" or "student_id name"
    split = [(n, *_id_and_name(line)) for n, line in lines if line.strip()]
    _at_most_max_rows(split)  # before hashing names
    taken = {sid for _, sid, _ in split if sid}
    rows, generated = [], {}
    for number, sid, name in split:
        if sid is None:
            sid = generated_id(name, taken)
            taken.add(sid)
            generated[sid] = number
        rows.append((number, [sid, name]))
    report = _checked(rows, 0, 1)
    report.generated = [{"row": generated[e["student_id"]], **e} for e in report.accepted
                        if e["student_id"] in generated]
    return report


def _id_and_name(line: str) -> tuple[str | None, str]:
    """(id, name) of a line; (None, the whole line) when its first word is no student id."""
    words = line.split()
    if STUDENT_ID.match(words[0]) and re.search(r"[0-9]", words[0]):
        return words[0], " ".join(words[1:])
    return None, " ".join(words)


def generated_id(name: str, taken: set[str]) -> str:
    """``gen-`` and 8 hex digits of the name's SHA-256: readable, and the same name gets the same
    id in every import (so importing again changes nothing). A second student of the same name in
    one roster gets ``-2``, a third ``-3``, in the order of the lines."""
    base = "gen-" + hashlib.sha256(" ".join(name.split()).casefold().encode()).hexdigest()[:8]
    candidate, repeat = base, 1
    while candidate in taken:
        repeat += 1
        candidate = f"{base}-{repeat}"
    return candidate


def _quoted(cell: str) -> str:
    return cell if len(cell) <= MAX_QUOTED else cell[:MAX_QUOTED] + "…"


def import_table(data: bytes, media_type: str, filename: str = "", exam_id: int | None = None) -> dict:
    """Put a file's students into the registry and, with ``exam_id``, onto that exam's roster.

    Registry and roster are written in one transaction: an unknown exam (404) or any other refusal
    leaves both as they were.
    """
    return import_checked(parse_table(data, media_type, filename), exam_id)


def import_checked(report: ImportReport, exam_id: int | None = None) -> dict:
    """Write the accepted rows of a checked import as ``import_table`` does (for a caller that
    shows the report's rows themselves)."""
    with engine().begin() as conn:
        added = roster_additions(conn, exam_id, report.accepted) if exam_id is not None else None
        created, updated = upsert_students(report.accepted, conn)
    answer = {**report.as_dict(), "created": created, "updated": updated}
    if exam_id is not None:
        answer["roster"] = roster_answer(exam_id, report.accepted, added)
    return answer
