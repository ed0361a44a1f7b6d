"""Finish → a real Celery merge worker → one verified recording.

Media is generated with FFmpeg's lavfi sources; the worker runs FFmpeg for real. The first test
goes over real HTTP to Gunicorn (the whole stack, with a Range request for the download); the
others call the API in-process, the worker being what they are about.
"""
from __future__ import annotations

from pathlib import Path

from proctor import segment_probes, storage
from tests.helpers import DATA, error_code, sha256, start_worker, wait_until, wait_worker_ready
from tests.media_helpers import ffprobe_streams, make_clip, make_garbage, make_mediarecorder_chunks


def segment_files(session_id: int) -> list[Path]:
    d = DATA / "segments" / str(session_id)
    return sorted(d.iterdir()) if d.exists() else []


def download(api, s) -> Path:
    r = api.get(f"/api/sessions/{s['session_id']}/recording", s["token"])
    assert r.status_code == 200, r.text
    path = DATA.parent / f"download-{s['session_id']}.bin"
    path.write_bytes(r.content)
    return path


def duration(path: Path) -> float:
    return float(ffprobe_streams(path)["format"]["duration"])


def test_mp4_segments_out_of_order(http_api, merge_worker, tmp_path):
    api = http_api
    exam = api.create_exam()
    s = api.join(exam["id"], "mp4-student")
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=1.0) for i in range(4)]
    for seq in (2, 0, 3, 1):  # the network reorders uploads
        data = clips[seq].read_bytes()
        r = api.upload(s, seq, data, "video/mp4", **{"X-Content-SHA256": sha256(data)})
        assert r.status_code == 201
    api.finish(s, last_seq=3)
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    rec = view["recording"]
    assert rec["gaps"] == [] and rec["progress"] == 1.0 and rec["task_id"]
    assert rec["report"]["segments_used"] == [0, 1, 2, 3]
    assert abs(rec["duration"] - 4.0) <= 0.2

    out = download(api, s)
    assert sha256(out.read_bytes()) == rec["sha256"]
    assert abs(duration(out) - 4.0) <= 0.2
    assert segment_files(s["session_id"]) == []  # deleted only after the verified recording

    # Range requests let a browser seek.
    r = api.get(f"/api/sessions/{s['session_id']}/recording", "teacher", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100

    # Another student may not watch it.
    other = api.join(exam["id"], "nosy")
    assert api.get(f"/api/sessions/{s['session_id']}/recording", other["token"]).status_code == 403

    # A merged session cannot be re-queued: its recording stays as it is.
    r = api.post(f"/api/sessions/{s['session_id']}/merge", "teacher")
    assert r.status_code == 409 and error_code(r) == "not_mergeable", r.text
    again = api.session(s)
    assert again["state"] == "merged" and again["recording"] == rec


def test_mediarecorder_chunks(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "browser-student")
    chunks = make_mediarecorder_chunks(tmp_path, seconds=3.0, n_chunks=5)
    for seq, chunk in enumerate(chunks):
        assert api.upload(s, seq, chunk.read_bytes(), "video/webm").status_code == 201
    api.finish(s)
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    assert view["recording"]["report"]["method"] == "bytes-remux"
    assert abs(view["recording"]["duration"] - 3.0) <= 0.3


def test_resolution_change_and_corrupt_segment(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "mixed-student")
    parts = [
        make_clip(tmp_path / "a.mp4", seconds=1.0, size="320x240"),
        make_garbage(tmp_path / "b.mp4"),
        make_clip(tmp_path / "c.mp4", seconds=1.0, size="640x360"),
    ]
    for seq, path in enumerate(parts):
        assert api.upload(s, seq, path.read_bytes(), "video/mp4").status_code == 201
    api.finish(s, last_seq=2)
    view = api.wait_for_state(s)
    assert view["state"] == "partial", view
    rec = view["recording"]
    assert rec["report"]["method"] == "reencode"
    assert [x["seq"] for x in rec["report"]["skipped"]] == [1]
    assert rec["report"]["skipped"][0]["reason"] and "path" not in rec["report"]["skipped"][0]
    assert rec["report"]["output"] == f"recordings/session-{s['session_id']}.mp4"  # no server paths
    out = download(api, s)
    streams = [st for st in ffprobe_streams(out)["streams"] if st["codec_type"] == "video"]
    assert len(streams) == 1
    assert abs(duration(out) - 2.0) <= 0.3
    # The unreadable segment is kept for inspection; the merged ones are gone.
    assert [p.name for p in segment_files(s["session_id"])] == ["000001.mp4"]


def upload_described(api, s, paths: list[Path], described: int) -> list[str]:
    """Upload the files as seqs 0.., then wait until the merge worker has described ``described``
    of them (as it does each upload while the exam runs); their SHA-256s."""
    digests = []
    for seq, path in enumerate(paths):
        data = path.read_bytes()
        digests.append(sha256(data))
        assert api.upload(s, seq, data, "video/mp4").status_code == 201
    wait_until(lambda: len(segment_probes.known(digests)) == described, what="segments described")
    return digests


def test_discard_all_removes_every_file_and_passes_over_missing_ones(tmp_path):
    files = [tmp_path / f"{n:06d}.mp4" for n in range(20)]
    for path in files:
        path.write_bytes(b"segment")
    storage.discard_all([*files, tmp_path / "never-stored.mp4"])
    assert list(tmp_path.iterdir()) == []


def test_a_clean_merge_plans_from_what_was_learnt_at_upload(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "described-student")
    clips = [make_clip(tmp_path / f"d{i}.mp4", seconds=1.0 + i / 2) for i in range(3)]
    digests = upload_described(api, s, clips, described=3)
    api.finish(s, last_seq=2)
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    report = view["recording"]["report"]
    assert report["plan"] == "stored" and report["probes_run"] == 0, report
    assert report["method"] == "concat-copy" and report["segments_used"] == [0, 1, 2]
    assert abs(duration(download(api, s)) - 4.5) <= 0.2  # the verification still ran
    assert segment_files(s["session_id"]) == []
    assert segment_probes.known(digests) == {}  # deleted with their segments


def test_a_corrupt_segment_between_good_ones_is_skipped_and_the_rest_copied(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "corrupt-middle")
    parts = [make_clip(tmp_path / "a.mp4", seconds=1.0), make_garbage(tmp_path / "b.mp4"),
             make_clip(tmp_path / "c.mp4", seconds=1.5)]
    upload_described(api, s, parts, described=2)  # nothing to keep of the garbage
    api.finish(s, last_seq=2)
    view = api.wait_for_state(s)
    assert view["state"] == "partial", view
    report = view["recording"]["report"]
    assert [x["seq"] for x in report["skipped"]] == [1] and report["skipped"][0]["reason"].startswith("ffprobe")
    assert report["segments_used"] == [0, 2] and report["method"] == "concat-copy"
    assert report["plan"] == "probed" and report["probes_run"] == 1  # only the one never described
    assert abs(duration(download(api, s)) - 2.5) <= 0.2
    assert [p.name for p in segment_files(s["session_id"])] == ["000001.mp4"]


def test_missing_seq_becomes_gap_after_grace(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "gappy")
    for seq in (0, 2):
        api.upload(s, seq, make_clip(tmp_path / f"g{seq}.mp4").read_bytes(), "video/mp4")
    api.finish(s, last_seq=2)
    view = api.wait_for_state(s)
    assert view["state"] == "partial"
    assert view["recording"]["gaps"] == [1]
    assert view["missing"] == [[1, 1]]


def test_late_segment_within_grace_is_merged(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "late-seg")
    clips = [make_clip(tmp_path / f"l{i}.mp4") for i in range(2)]
    api.upload(s, 0, clips[0].read_bytes(), "video/mp4")
    api.finish(s, last_seq=1)
    assert api.upload(s, 1, clips[1].read_bytes(), "video/mp4").status_code == 201
    view = api.wait_for_state(s)
    assert view["state"] == "merged" and view["recording"]["gaps"] == []


def test_unreadable_session_fails_keeps_segments_and_can_be_requeued(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], "broken")
    api.upload(s, 0, make_garbage(tmp_path / "x.mp4").read_bytes(), "video/mp4")
    api.finish(s)
    view = api.wait_for_state(s)
    assert view["state"] == "failed" and view["recording"]["error"]
    assert len(segment_files(s["session_id"])) == 1

    assert api.post(f"/api/sessions/{s['session_id']}/merge", s["token"]).status_code == 403
    r = api.post(f"/api/sessions/{s['session_id']}/merge", "teacher")
    assert r.status_code == 202
    view = api.wait_for_state(s, timeout=60)
    assert view["state"] == "failed" and view["recording"]["attempts"] == 1, view  # counted afresh
    assert len(segment_files(s["session_id"])) == 1
    r = api.post("/api/sessions/999999/merge", "teacher")
    assert r.status_code == 404 and error_code(r) == "not_found"


def test_duplicate_delivery_yields_one_recording(api, merge_worker, tmp_path):
    from proctor.worker import celery_app

    exam = api.create_exam()
    s = api.join(exam["id"], "dup")
    for seq in range(2):
        api.upload(s, seq, make_clip(tmp_path / f"d{seq}.mp4").read_bytes(), "video/mp4")
    api.finish(s)
    extra = [celery_app.send_task("celery_tasks.merge_videos_task", args=[s["session_id"]], queue="video_merge") for _ in range(2)]
    results = [r.get(timeout=90) for r in extra]
    assert all(r["status"] in {"merged", "skipped"} for r in results), results
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    recordings = list((DATA / "recordings").glob(f"session-{s['session_id']}.*"))
    assert len(recordings) == 1
    assert view["recording"]["attempts"] == 1


def test_sigkill_mid_merge_ends_in_one_recording(api, merge_worker, tmp_path):
    """Kill the whole merge worker with SIGKILL during FFmpeg; after a restart and a reconcile run
    there is exactly one verified recording."""
    exam = api.create_exam()
    s = api.join(exam["id"], "killed")
    # A resolution change forces a re-encode: slow enough to be killed in the middle.
    for seq in range(6):
        size = "1280x720" if seq % 2 else "960x540"
        clip = make_clip(tmp_path / f"k{seq}.mp4", seconds=4.0, size=size, rate=25, audio=False)
        api.upload(s, seq, clip.read_bytes(), "video/mp4")

    merge_worker.stop()  # the merge worker killed must be the only one
    try:
        _kill_mid_merge_and_requeue(api, s)
    finally:
        # Restarted, the suite's merge worker is the survivor that takes the re-queued merge.
        wait_worker_ready(merge_worker.start(), "merge-test")
    view = api.wait_for_state(s, timeout=180)
    assert view["state"] == "merged", view
    assert view["recording"]["attempts"] == 2
    assert len(list((DATA / "recordings").glob(f"session-{s['session_id']}.*"))) == 1
    assert not list((DATA / "recordings").glob(".tmp-*"))


def _kill_mid_merge_and_requeue(api, s: dict) -> None:
    from proctor import merge, redis_client
    from proctor.worker import celery_app

    api.finish(s)
    victim = start_worker("video_merge", 1, "victim")
    try:
        task_id = api.wait_for_state(s, {"merging"}, timeout=60)["recording"]["task_id"]
        # FFmpeg's progress reaches the task state that Flower shows.
        progress = wait_until(lambda: (res := celery_app.AsyncResult(task_id)).state == "PROGRESS" and res.info,
                              timeout=60, interval=0.2, what="the merge task's PROGRESS state")
        assert progress["session_id"] == s["session_id"] and 0 <= progress["progress"] < 1
    finally:
        victim.kill()
    assert api.session(s)["state"] == "merging"
    assert not list((DATA / "recordings").glob(f"session-{s['session_id']}.*"))

    # The dead worker's lease still stands, and while it does reconcile leaves the session alone
    # (its holder might only be slow). It lapses by itself: it has a TTL and nobody renews it.
    lease = redis_client.key("lock", merge.lease_name(s["session_id"]))
    r = redis_client.client()
    assert 0 < r.pttl(lease) <= merge.LEASE_TTL_S * 1000
    assert s["session_id"] not in merge.reconcile(stale_after_s=0)["requeued"]
    assert api.session(s)["state"] == "merging"
    # What those seconds would do, without waiting for them.
    r.pexpire(lease, 1)
    wait_until(lambda: not r.exists(lease), timeout=5, interval=0.01, what="the lease to lapse")
    assert s["session_id"] in merge.reconcile(stale_after_s=0)["requeued"]
