"""Archive and export of a finished exam, through the operator CLI (``python -m proctor.cli``)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from tests.helpers import DATA, error_code, png_image, run_cli, unique
from tests.media_helpers import make_clip


def finished_exam(api, tmp_path) -> tuple[dict, dict, dict]:
    """An exam with one merged session (2 segments, a screenshot, a violation) and one absent."""
    sid = unique("arch")
    exam = api.create_exam(title="To archive", roster=[{"student_id": sid, "name": "Archie"}, "absent-" + sid])
    s = api.join(exam["id"], sid)
    for seq in range(2):
        assert api.upload(s, seq, make_clip(tmp_path / f"{seq}.mp4", seconds=1.0).read_bytes()).status_code == 201
    shot = api.screenshot(s, png_image()).json()
    api.post(f"/api/sessions/{s['session_id']}/violations", s["token"], json={"reason": "phone on desk"})
    api.finish(s)
    assert api.wait_for_state(s)["state"] == "merged"
    assert api.post(f"/api/exams/{exam['id']}/end", "teacher").status_code == 200
    return exam, s, shot


def test_archive_moves_verified_files_and_records_them(api, merge_worker, tmp_path):
    exam, s, shot = finished_exam(api, tmp_path)
    view = api.session(s)
    rec_path = DATA / "recordings" / f"session-{s['session_id']}.mp4"
    assert rec_path.is_file()

    r = api.delete(f"/api/exams/{exam['id']}")
    assert r.status_code == 409 and error_code(r) == "has_recordings"

    dest = tmp_path / "backup"
    done = run_cli("archive", str(exam["id"]), "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["files"] == 2 and result["directory"] == str((dest / f"exam-{exam['id']}").resolve())

    archived_rec = Path(result["directory"]) / "recordings" / rec_path.name
    assert hashlib.sha256(archived_rec.read_bytes()).hexdigest() == view["recording"]["sha256"]
    assert not rec_path.exists()
    archived_shot = next((Path(result["directory"]) / "screenshots" / str(s["session_id"])).iterdir())
    assert archived_shot.read_bytes() == png_image()
    manifest = json.loads(next(Path(result["directory"]).glob("manifest-*.json")).read_text())
    assert {i["kind"] for i in manifest["items"]} == {"recording", "screenshot"}

    assert api.session(s)["recording"]["status"] == "archived"
    r = api.get(f"/api/sessions/{s['session_id']}/recording", "teacher")
    assert r.status_code == 410 and error_code(r) == "recording_archived"
    archives = api.get(f"/api/exams/{exam['id']}/archives", "teacher").json()["archives"]
    assert [(a["directory"], a["files"]) for a in archives] == [(result["directory"], 2)]
    assert api.get(f"/api/exams/{exam['id']}/archives", s["token"]).status_code == 403
    assert api.get(f"/api/screenshots/{shot['id']}", "teacher").status_code == 409
    listed = api.get(f"/api/sessions/{s['session_id']}/screenshots", "teacher").json()["screenshots"]
    assert listed[0]["archived"] is True

    # The report says where the recording went; a second archive has nothing left to move.
    report = list(csv.DictReader(io.StringIO(run_cli("export", str(exam["id"])).stdout)))
    row = next(r for r in report if r["student_id"] == s_student(api, s))
    assert row["archived_to"] == str(archived_rec) and row["recording_status"] == "archived"
    again = run_cli("archive", str(exam["id"]), "--dest", str(dest))
    assert again.returncode == 0 and json.loads(again.stdout)["files"] == 0

    # Archived: the exam may now be deleted without force.
    assert api.delete(f"/api/exams/{exam['id']}").status_code == 200
    assert archived_rec.is_file()


def s_student(api, s) -> str:
    return api.session(s)["student_id"]


def test_export_report(api, merge_worker, tmp_path):
    exam, s, _ = finished_exam(api, tmp_path)
    out = tmp_path / "report.csv"
    done = run_cli("export", str(exam["id"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    student = s_student(api, s)
    assert set(rows) == {student, "absent-" + student}
    row = rows[student]
    assert row["name"] == "Archie" and row["on_roster"] == "True" and row["state"] == "merged"
    assert row["violations"] == "1" and row["violation_reasons"] == "phone on desk"
    assert row["screenshots"] == "1" and row["segments"] == "2" and row["logins"] == "1"
    assert abs(float(row["recording_duration_s"]) - 2.0) <= 0.3 and row["recording_gaps"] == ""
    assert row["presence_spans"].count("/") == 1 and float(row["online_seconds"]) > 0
    assert rows["absent-" + student]["session_id"] == ""

    r = api.get(f"/api/exams/{exam['id']}/report.csv", "teacher")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("student_id,name,on_roster")


def cli_here(capsys, *args: str) -> tuple[int, str]:
    """The CLI's ``main`` in this process (its refusals need no new interpreter; the tests above
    run ``python -m proctor.cli``): exit status and what it wrote to stderr."""
    from proctor.cli import main

    try:
        status = main(list(args))
    except SystemExit as usage:  # argparse refuses a bad command line this way
        status = usage.code
    return status, capsys.readouterr().err


def test_archive_refuses_unfinished_exams(api, capsys):
    exam = api.create_exam()
    api.join(exam["id"], "still-writing")
    status, err = cli_here(capsys, "archive", str(exam["id"]))
    assert status == 1 and "completed" in err
    assert api.roster_sessions(exam["id"])[0]["state"] == "active"  # nothing was moved or finished
    assert cli_here(capsys, "archive", "999999")[0] == 1
    assert cli_here(capsys, "export", "999999")[0] == 1
    assert cli_here(capsys, "frobnicate")[0] == 2


def test_cli_import_students(api, tmp_path):
    sid = unique("cli")
    exam = api.create_exam()
    path = tmp_path / "list.csv"
    path.write_text(f"Student ID;Name\n{sid};Via CLI\n;nobody\n", encoding="utf-8")
    done = run_cli("import-students", str(path), "--exam-id", str(exam["id"]))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] == 1 and report["rejected"][0]["row"] == 3
    assert report["roster"]["added"] == [sid]
