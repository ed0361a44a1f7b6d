"""``python -m proctor.client``: take an exam from the command line (or simulate a hall of students)."""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..config import Env
from .connection import Proof
from .fleet import handle_interrupts, run_fleet
from .recorder import ENCODERS, RecordingPlan, SourceError
from .report import Reporter, Stats
from .student import Controls, Options

DESCRIPTION = """\
Take an exam through proctor's token API: join, heartbeat, record the screen (or a test source, or
a video file) as numbered segments with FFmpeg, upload each one, finish.

Every segment is written to the spool directory first and stays there until the server has
acknowledged it; uploads are retried with backoff while the server is unreachable. After a crash
run the same command again with the same --spool: it joins again, sends what the spool holds and
goes on recording. The spool's state.json keeps the session id, exam and student; the session
token is kept only in memory, never on disk (joining again gives a new one and revokes the old).

Ctrl-C stops recording, sends what is recorded and finishes the session; a second Ctrl-C quits at
once, leaving the spool for the next run."""

EPILOG = """\
environment: PROCTOR_ENTRY_CODE and PROCTOR_INVITATION_CODE stand for --entry-code and
--invitation-code (codes given as options are visible to other users in the process list).
An invitation code is used up by the first join: a run after a crash needs the entry code."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m proctor.client", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8000", help="proctor's address (default %(default)s)")
    p.add_argument("--exam", type=int, required=True, metavar="ID", help="the exam's id")
    p.add_argument("--student-id", default="", help="your student id (with --students N: a prefix, students "
                                                    "PREFIX1..PREFIXN)")
    p.add_argument("--entry-code", default="", help="the exam's entry code (or PROCTOR_ENTRY_CODE)")
    p.add_argument("--invitation-code", default="", help="a one-use invitation code (or PROCTOR_INVITATION_CODE)")
    p.add_argument("--spool", type=Path, default=Path("proctor-spool"),
                   help="where segments wait until acknowledged (default %(default)s); with --students N a "
                        "subdirectory per student")
    p.add_argument("--source", default=None, help="screen (X11, needs DISPLAY), testsrc (FFmpeg's test pattern) "
                                                  "or file:PATH (a video cut into segments); default screen when "
                                                  "DISPLAY is set, else testsrc")
    p.add_argument("--segment-seconds", type=float, default=10.0, help="length of a segment (default %(default)s)")
    p.add_argument("--format", choices=sorted(ENCODERS), default="mp4", help="mp4 (H.264) or webm (VP8)")
    p.add_argument("--size", default="640x360", help="testsrc's picture size (default %(default)s)")
    p.add_argument("--fps", type=int, default=10, help="frames a second (default %(default)s)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds to record in all, restarts included (default: until Ctrl-C or the session ends; "
                        "a file source ends with the file)")
    p.add_argument("--students", type=int, default=1, metavar="N", help="simulate N students in this process")
    p.add_argument("--drop-rate", type=float, default=0.0, metavar="P",
                   help="chance per minute that a student's network goes away for about --drop-seconds "
                        "(recording goes on)")
    p.add_argument("--drop-seconds", type=float, default=20.0)
    p.add_argument("--restart-rate", type=float, default=0.0, metavar="P",
                   help="chance per minute that a student's client crashes and starts again on its spool")
    return p


def students_of(args, env: Env) -> list[tuple[str, Proof, Path]]:
    entry = args.entry_code or env.text("PROCTOR_ENTRY_CODE", "")
    invitation = args.invitation_code or env.text("PROCTOR_INVITATION_CODE", "")
    if args.students == 1:
        return [(args.student_id or "student", Proof(args.student_id, entry, invitation), args.spool)]
    return [(f"{args.student_id}{n}", Proof(f"{args.student_id}{n}", entry), args.spool / f"{args.student_id}{n}")
            for n in range(1, args.students + 1)]


def check(args, p: argparse.ArgumentParser, env: Env) -> None:
    if args.students < 1:
        p.error("--students must be at least 1")
    if args.segment_seconds < 1:
        p.error("--segment-seconds must be at least 1")
    has_invitation = bool(args.invitation_code or env.text("PROCTOR_INVITATION_CODE", ""))
    if has_invitation and args.students > 1:
        p.error("an invitation code is one student's: use the entry code with --students")
    if not has_invitation and not (args.student_id and (args.entry_code or env.text("PROCTOR_ENTRY_CODE", ""))):
        p.error("give --student-id and --entry-code (or PROCTOR_ENTRY_CODE), or --invitation-code")


def main(argv: list[str] | None = None) -> int:
    env = Env()
    p = parser()
    args = p.parse_args(argv)
    check(args, p, env)
    display = env.text("DISPLAY", "")
    source = args.source or ("screen" if display else "testsrc")
    plan = RecordingPlan(source, args.segment_seconds, args.format, args.size, args.fps, display)
    try:
        plan.input_args(0.0)
    except SourceError as err:
        p.error(str(err))
    options = Options(args.server.rstrip("/"), args.exam, plan, args.duration, args.drop_rate, args.drop_seconds,
                      args.restart_rate)
    controls = Controls(threading.Event(), threading.Event())
    reporter = Reporter(Stats())
    handle_interrupts(controls, reporter)
    with reporter:
        reporter.event("client", f"recording {source} in {args.segment_seconds:g} s {args.format} segments")
        finished = run_fleet(students_of(args, env), options, reporter, controls)
    reporter.print_summary()
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
