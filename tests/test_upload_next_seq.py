"""An upload's answer carries next_seq, the seq after the highest one its session stored, read at
the end of the session's index: the same one look-up for the first upload as for the 700th, and
right when uploads of one session arrive at once (each sees at least its own)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, insert

from tests.helpers import unique


def test_concurrent_uploads_of_one_session_each_answer_a_next_seq_past_their_own(http_api):
    exam = http_api.create_exam()
    s = http_api.join(exam["id"], unique("burst"))
    seqs = [5, 0, 7, 1, 6, 2, 4, 3, 9, 8, 11, 10]

    def upload(seq: int) -> tuple[int, dict]:
        r = http_api.upload(s, seq, f"\0segment {seq}".encode(), "video/webm")
        return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(seqs, pool.map(upload, seqs)))
    for seq, (status, body) in answers.items():
        assert status == 201 and body["seq"] == seq and seq < body["next_seq"] <= 12, (seq, body)
    assert max(body["next_seq"] for _, body in answers.values()) == 12
    assert http_api.upload(s, 12, b"\0segment 12", "video/webm").json()["next_seq"] == 13
    assert http_api.session(s)["next_seq"] == 13


def test_an_upload_late_in_a_long_session_reads_one_row_at_a_time(api):
    """Every query of the 701st upload of a session returns at most one row (none reads the
    session's stored seqs): its database work does not grow through the exam."""
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import segments

    exam = api.create_exam()
    long = api.join(exam["id"], unique("long"))
    with engine().begin() as conn:
        conn.execute(insert(segments), [
            {"session_id": long["session_id"], "run": 0, "seq": seq, "size": 1, "sha256": "0" * 64,
             "media_type": "video/webm", "received_at": utcnow()} for seq in range(700)])
    selects: list[tuple] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append((statement, parameters))

    event.listen(engine(), "after_cursor_execute", seen)
    try:
        r = api.upload(long, 700, b"\0segment 700", "video/webm")
    finally:
        event.remove(engine(), "after_cursor_execute", seen)
    assert r.status_code == 201 and r.json()["next_seq"] == 701, r.text
    assert selects, "the upload was seen querying the database"
    with engine().connect() as conn:  # each query again, its rows counted
        for statement, parameters in selects:
            assert len(conn.exec_driver_sql(statement, parameters).all()) <= 1, statement
