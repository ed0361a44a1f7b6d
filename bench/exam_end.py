"""Benchmark: the exam's end, every session of a hall merged at once, on the whole stack.

Usage: .venv/bin/python bench/exam_end.py [--sessions N] [--segments K] [--seconds S] [--beats R]
                                          [--upload-threads T] [--json]

The stack is the soak's own (tests.soak.Stack: a private redis-server, a database of its own,
Gunicorn, status worker, Beat and the merge worker with its concurrency of 2), the merge worker
reniced as its unit runs it (Nice=10, best-effort I/O priority 7; the unit's cgroup weights need
systemd and are not applied here).

K distinct S-second 640x360 H.264/AAC clips are made once; session i's segment j is clip j with a
tag of its own in the metadata, so every segment's bytes differ, as real ones do (a description
is kept per content and forgotten with the first merge that deletes it). N token-API students
join one exam and PUT their K segments with their SHA-256 through the real API, each upload
queueing its probe (``segment_probes``) as during an exam. Once every segment is described, the
clock starts:

- baseline: ``ffmpeg -f concat -safe 0 -i list -c copy out.mp4`` of each session's K segments,
  two processes at a time (the merge worker's concurrency);
- the exam's end: every student's finish call (``last_seq`` K-1) at once, until every session is
  merged (verified, fsynced, recorded in the database) and its segments are deleted (rows marked,
  files gone).

Both phases run under a paced load of R token heartbeats a second (default 50) from students of
another exam still running; their p50/p99 in each phase is measured from each call's due time,
and for the exam's end also from when the last finish call was answered (the N finish calls are
web work of their own; after them the merges alone compete with the heartbeats). Prints the two
times, their ratio, the heartbeat latencies and what the merges reported (method, plan, probes
run); ``--json`` prints them as one JSON object instead.

Leaves the stack's logs (their folder is printed on stderr); its data, gigabytes at full size,
is removed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import Api, HttpTransport, sha256, wait_until  # noqa: E402 - after the path
from tests.media_helpers import make_clip  # noqa: E402
from tests.soak import Options, Stack, children, crowd_environment  # noqa: E402
from sqlalchemy import func, select  # noqa: E402 - third party, after the path like the rest

from proctor.db import engine  # noqa: E402
from proctor.schema import recordings  # noqa: E402
from proctor.schema import segments as segments_t  # noqa: E402
from proctor.schema import sessions as sessions_t  # noqa: E402
from proctor.segment_probes import known  # noqa: E402
from proctor.storage import segment_dir  # noqa: E402

TAG = b"exam-end-tag-" + b"X" * 19  # 32 bytes in each clip's metadata, rewritten per segment
PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "yuvtestsrc")
HEARTBEAT_STUDENTS = 50
MERGE_NICE, MERGE_IO_PRIORITY = 10, 7  # systemd/proctor-worker-merge.service's Nice= and IOSchedulingPriority=


# --- the media ------------------------------------------------------------------------------------


def make_clips(folder: Path, count: int, seconds: float) -> list[bytes]:
    """``count`` distinct clips (pattern and hue differ), each holding TAG once."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for n in range(count):
        path = make_clip(folder / f"clip{n}.mp4", seconds=seconds, size="640x360", rate=15,
                         pattern=PATTERNS[n % len(PATTERNS)],
                         video_args=("-b:v", "100k", "-metadata", f"comment={TAG.decode()}",
                                     "-vf", f"hue=h={n * 7 % 360}"))
        data = path.read_bytes()
        if data.count(TAG) != 1:
            raise RuntimeError(f"{path}: the metadata tag is not in the file once")
        clips.append(data)
    return clips


def segment_bytes(clip: bytes, session: int, seq: int) -> bytes:
    """The clip with a tag of this segment's own: the same streams, other bytes."""
    return clip.replace(TAG, f"s{session:09d}-q{seq:06d}-".encode().ljust(len(TAG), b"-"))


def undescribed(digests: list[str]) -> int:
    """How many of these segments their upload's probe has not described yet."""
    return len(digests) - sum(len(known(digests[i:i + 1000])) for i in range(0, len(digests), 1000))


# --- the stack ------------------------------------------------------------------------------------


def renice_merge_worker(stack: Stack) -> None:
    """The merge worker's processes niced as its unit's Nice= and IOScheduling* say (FFmpeg and
    ffprobe, started by them, inherit it)."""
    pid = stack.merge.proc.pid
    for member in [pid, *children(pid)]:
        os.setpriority(os.PRIO_PROCESS, member, MERGE_NICE)
        subprocess.run(["ionice", "-c", "2", "-n", str(MERGE_IO_PRIORITY), "-p", str(member)], check=True)


# --- the load -------------------------------------------------------------------------------------


class Heartbeats(threading.Thread):
    """``rate`` token heartbeats a second, round the students, each timed from when it was due
    (a late start counts: the server's queue is what is measured)."""

    def __init__(self, api: Api, students: list[dict], rate: float):
        super().__init__(daemon=True)
        self.api, self.students, self.every = api, students, 1 / rate
        self.samples: list[tuple[float, float, bool]] = []  # (due, latency s, ok)
        self.halt = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=32)

    def beat(self, due: float, student: dict) -> None:
        try:
            ok = self.api.heartbeat(student).status_code == 200
        except Exception:  # noqa: BLE001 - a failed heartbeat is counted, not raised
            ok = False
        self.samples.append((due, time.monotonic() - due, ok))

    def run(self) -> None:
        due, n = time.monotonic(), 0
        while not self.halt.is_set():
            self.pool.submit(self.beat, due, self.students[n % len(self.students)])
            n += 1
            due += self.every
            self.halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.pool.shutdown(wait=True)

    def between(self, start: float, end: float) -> dict:
        """p50/p99 (ms) and failures of the heartbeats due in [start, end)."""
        window = [(lat, ok) for due, lat, ok in self.samples if start <= due < end]
        latencies = sorted(lat for lat, _ in window)
        if not latencies:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "failed": 0}
        pick = lambda q: round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 1)  # noqa: E731
        return {"count": len(latencies), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "failed": sum(not ok for _, ok in window)}


# --- the phases -----------------------------------------------------------------------------------


def upload_all(base: str, exam: dict, teacher: Api, sessions: int, clips: list[bytes], threads: int) -> list[dict]:
    """Every student joins and PUTs its segments (seq 0..K-1, with their SHA-256)."""
    students = [teacher.join(exam["id"], f"end-{n}") for n in range(sessions)]
    local = threading.local()

    def put(job: tuple[int, int]) -> None:
        session, seq = job
        if not hasattr(local, "api"):
            local.api = Api(HttpTransport(base))
        data = segment_bytes(clips[seq], session, seq)
        r = local.api.upload(students[session], seq, data, "video/mp4", **{"X-Content-SHA256": sha256(data)})
        if r.status_code != 201:
            raise RuntimeError(f"upload {session}/{seq}: {r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, [(s, q) for s in range(sessions) for q in range(len(clips))]))
    return students


def plain_ffmpeg(stack: Stack, students: list[dict], segments: int, processes: int = 2) -> float:
    """Seconds for ``processes`` at a time to join each session's stored segments with plain
    ``ffmpeg -f concat -c copy`` (their outputs removed afterwards, outside the time)."""
    folder = stack.dir / "plain"
    folder.mkdir()
    lists = []
    for s in students:
        listing = folder / f"{s['session_id']}.txt"
        seg_dir = stack.dir / "data" / "segments" / str(s["session_id"])
        listing.write_text("".join(f"file '{seg_dir / f'{q:06d}.mp4'}'\n" for q in range(segments)))
        lists.append(listing)

    def join(listing: Path) -> None:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                        str(listing), "-c", "copy", str(listing.with_suffix(".mp4"))], check=True)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=processes) as pool:
        list(pool.map(join, lists))
    took = time.monotonic() - started
    for listing in lists:
        listing.with_suffix(".mp4").unlink()
    return took


def settled(session_ids: list[int]) -> dict:
    """How far the merges are: sessions merged, failed, and segments not yet deleted."""
    with engine().connect() as conn:
        states = dict(conn.execute(select(sessions_t.c.state, func.count()).where(sessions_t.c.id.in_(session_ids))
                                   .group_by(sessions_t.c.state)).all())
        kept = conn.execute(select(func.count()).select_from(segments_t).where(
            segments_t.c.session_id.in_(session_ids), segments_t.c.deleted_at.is_(None))).scalar_one()
    return {"states": states, "segments_kept": kept}


def end_exam(api: Api, students: list[dict], segments: int, timeout: float) -> tuple[float, float]:
    """Every student's finish call at once; when the last finish was answered and when every
    session was merged, in the database, and its segments deleted (rows and files)."""
    ids = [s["session_id"] for s in students]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda s: api.finish(s, last_seq=segments - 1), students))
    answered = time.monotonic()

    def done() -> bool:
        now = settled(ids)
        if set(now["states"]) - {"finished", "merging", "merged"}:
            raise RuntimeError(f"a merge did not end merged: {now}")
        return now["states"].get("merged", 0) == len(ids) and now["segments_kept"] == 0

    wait_until(done, timeout=timeout, interval=0.2, what="every session merged and its segments deleted")
    merged = time.monotonic()
    left = [sid for sid in ids if segment_dir(sid).is_dir() and any(segment_dir(sid).iterdir())]
    if left:
        raise RuntimeError(f"segment files left after the merge of sessions {left[:10]}")
    return answered, merged


def merge_reports(session_ids: list[int]) -> dict:
    """What the merges said of themselves, counted: method, plan and ffprobes run for planning."""
    with engine().connect() as conn:
        reports = conn.execute(select(recordings.c.report).where(recordings.c.session_id.in_(session_ids))).scalars()
        seen = Counter((r["method"], r["plan"], r["probes_run"]) for r in reports)
    return {f"{m}, plan {p}, {n} probes": count for (m, p, n), count in seen.items()}


def run(sessions: int, segments: int, seconds: float, beats: float, upload_threads: int,
        merge_timeout: float) -> dict:
    options = Options(students=sessions, idle=0, partial_headers=0)
    stack = Stack(options)
    os.environ.update({"DATABASE_URL": stack.env["DATABASE_URL"], "REDIS_URL": stack.redis_url,
                       "PROCTOR_DATA_DIR": stack.env["PROCTOR_DATA_DIR"]})
    try:
        renice_merge_worker(stack)
        teacher = Api(HttpTransport(stack.base))
        clips = make_clips(stack.dir / "clips", segments, seconds)
        exam = teacher.create_exam(title="The exam's end", length_s=24 * 3600)
        started = time.monotonic()
        students = upload_all(stack.base, exam, teacher, sessions, clips, upload_threads)
        uploaded_s = time.monotonic() - started
        digests = [sha256(segment_bytes(clip, n, seq)) for n in range(sessions) for seq, clip in enumerate(clips)]
        wait_until(lambda: undescribed(digests) == 0, timeout=3600, interval=0.5, what="every segment described")

        other = teacher.create_exam(title="Still running", length_s=24 * 3600)
        beaters = [teacher.join(other["id"], f"beat-{n}") for n in range(HEARTBEAT_STUDENTS)]
        load = Heartbeats(Api(HttpTransport(stack.base)), beaters, beats)
        load.start()
        time.sleep(2)  # the load's own start (its connections opened) is not measured
        os.sync()  # neither phase writes back what came before it
        marks = [time.monotonic()]
        plain_s = plain_ffmpeg(stack, students, segments)
        marks.append(time.monotonic())
        os.sync()
        marks.append(time.monotonic())
        marks += end_exam(teacher, students, segments, merge_timeout)
        load.stop()
        merged_s = marks[4] - marks[2]
        ids = [s["session_id"] for s in students]
        return {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "sessions": sessions, "segments": segments, "seconds": seconds,
            "segment_kb": round(sum(len(c) for c in clips) / len(clips) / 1e3, 1),
            "uploads_per_s": round(sessions * segments / uploaded_s, 1),
            "plain_ffmpeg_s": round(plain_s, 2), "merged_s": round(merged_s, 2),
            "ratio": round(merged_s / plain_s, 2),
            "heartbeats_per_s": beats,
            "heartbeat_during_plain": load.between(marks[0], marks[1]),
            "heartbeat_during_merges": load.between(marks[2], marks[4]),
            # The 500 finish calls are web work of their own: the merges alone, once they are answered.
            "finish_calls_s": round(marks[3] - marks[2], 2),
            "heartbeat_after_finish_calls": load.between(marks[3], marks[4]),
            "merges": merge_reports(ids),
        }
    finally:
        stack.stop()
        for bulky in ("data", "plain", "clips"):  # gigabytes at full size; the logs stay
            shutil.rmtree(stack.dir / bulky, ignore_errors=True)
        print(f"logs: {stack.dir / 'logs'}", file=sys.stderr)


def report(s: dict) -> str:
    plain, merging = s["heartbeat_during_plain"], s["heartbeat_during_merges"]
    after = s["heartbeat_after_finish_calls"]
    return "\n".join([
        f"the exam's end: {s['sessions']} sessions × {s['segments']} × {s['seconds']:g} s segments "
        f"({s['segment_kb']} kB each), uploaded at {s['uploads_per_s']}/s; {s['machine']}",
        f"every session merged, verified, recorded, segments deleted: {s['merged_s']} s",
        f"plain ffmpeg -f concat -c copy, 2 at a time:                  {s['plain_ffmpeg_s']} s",
        f"ratio: {s['ratio']} ×",
        f"token heartbeats at {s['heartbeats_per_s']:g}/s, p50/p99 (failed): during the merges "
        f"{merging['p50_ms']}/{merging['p99_ms']} ms ({merging['failed']} of {merging['count']}); "
        f"during plain ffmpeg {plain['p50_ms']}/{plain['p99_ms']} ms ({plain['failed']} of {plain['count']})",
        f"the {s['sessions']} finish calls answered in {s['finish_calls_s']} s; heartbeats after them, the merges "
        f"alone: p50/p99 {after['p50_ms']}/{after['p99_ms']} ms ({after['failed']} of {after['count']})",
        "merges: " + "; ".join(f"{n} × {k}" for k, n in s["merges"].items()),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--segments", type=int, default=60, help="segments of each session")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each segment")
    parser.add_argument("--beats", type=float, default=50, help="token heartbeats a second during the merges")
    parser.add_argument("--upload-threads", type=int, default=8)
    parser.add_argument("--merge-timeout", type=float, default=3600, help="bound on the merges after the end")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if min(args.sessions, args.segments) < 1 or min(args.seconds, args.beats) <= 0:
        parser.error("need --sessions and --segments >= 1 and positive --seconds and --beats")
    crowd_environment()
    figures = run(args.sessions, args.segments, args.seconds, args.beats, args.upload_threads, args.merge_timeout)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    main()
