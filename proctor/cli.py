"""Operator commands: ``.venv/bin/python -m proctor.cli COMMAND`` (from the repository root).

  create-admin USERNAME            create an administrator account of the console (the first one);
                                   the password is typed twice, or read from the first line of
                                   standard input when that is no terminal
  archive EXAM_ID [--dest DIR]     move a completed exam's recordings, screenshots and leftover
                                   segments to DIR/exam-EXAM_ID (default PROCTOR_ARCHIVE_DIR),
                                   verified by checksum, and record where they went
  export EXAM_ID [--out FILE]      the exam report as CSV (roster, presence spans, logins,
                                   violations, recording duration and gaps) to FILE or stdout
  import-students FILE [--exam-id N]
                                   add a CSV, .xlsx or text list of students to the registry (and
                                   to exam N's roster); prints the rows accepted and rejected, and
                                   the ids generated for names without one
  merge-dir DIR OUT                merge a folder of segments from elsewhere into OUT, ordered by
                                   the number in each file name, else a timestamp in the name,
                                   else modification time (OUT's suffix follows the container)
  seat-config import FILE          load the original server's config.json as the seat settings
                                   (GET /api/config), without its server keys and secrets; prints
                                   the keys kept and the ones dropped
  seat-config show                 print the seat settings served to the seats
  prune-metrics [--dir DIR]        remove the Prometheus multiprocess files of processes that no
                                   longer run from DIR (default PROMETHEUS_MULTIPROC_DIR); the
                                   units run it before they start

Exit status: 0 on success, 1 when the command was refused (the reason is printed), 2 for usage.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from . import archive, imports, media, metric_files, report, seat_settings
from .config import settings
from .errors import ProctorError
from .web import accounts


def _create_admin(args) -> dict:
    return accounts.create_staff(args.username, _new_password(), accounts.ADMIN)


def _new_password() -> str:
    """Typed twice at a terminal (never on the command line, where ``ps`` shows it)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("the same password again: ") != first:
        raise ProctorError("the two passwords differ")
    return first


def _archive(args) -> dict:
    return archive.archive_exam(args.exam_id, Path(args.dest) if args.dest else None)


def _export(args) -> dict | None:
    text = report.report_csv(args.exam_id)
    if not args.out:
        sys.stdout.write(text)
        return None
    Path(args.out).write_text(text, encoding="utf-8")
    return {"exam_id": args.exam_id, "out": args.out, "rows": text.count("\n") - 1}


def _import(args) -> dict:
    path = Path(args.file)
    return imports.import_table(path.read_bytes(), "", path.name, args.exam_id)


def _seat_config_import(args) -> dict:
    try:
        with open(args.file, "rb") as f:
            data = f.read(seat_settings.MAX_BYTES + 1)  # one byte more tells a file too large
    except OSError as err:
        raise ProctorError(f"cannot read {args.file}: {err.strerror}") from err
    return seat_settings.import_original(data)


def _seat_config_show(_args) -> dict:
    return seat_settings.seat_configuration()


def _merge_dir(args) -> dict:
    try:
        result = media.merge_directory(
            Path(args.dir), Path(args.out), ffmpeg=settings().ffmpeg, ffprobe=settings().ffprobe
        )
    except (media.MediaError, FileNotFoundError, NotADirectoryError) as err:
        raise ProctorError(str(err)) from err
    return result.as_dict()


def _prune_metrics(args) -> dict:
    directory = args.dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        raise ProctorError("no directory: give --dir or set PROMETHEUS_MULTIPROC_DIR")
    return {"directory": directory, "removed": metric_files.prune_dead(Path(directory))}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=".venv/bin/python -m proctor.cli", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create-admin", help="create an administrator account of the console")
    c.add_argument("username")
    c.set_defaults(run=_create_admin)
    a = sub.add_parser("archive", help="move a completed exam's files to the backup directory")
    a.add_argument("exam_id", type=int)
    a.add_argument("--dest", help="backup directory (default PROCTOR_ARCHIVE_DIR)")
    a.set_defaults(run=_archive)
    e = sub.add_parser("export", help="write the exam report as CSV")
    e.add_argument("exam_id", type=int)
    e.add_argument("--out", help="file to write (default stdout)")
    e.set_defaults(run=_export)
    i = sub.add_parser("import-students", help="import students from CSV, .xlsx or a text roster")
    i.add_argument("file")
    i.add_argument("--exam-id", type=int)
    i.set_defaults(run=_import)
    m = sub.add_parser("merge-dir", help="merge a folder of segments into one video")
    m.add_argument("dir")
    m.add_argument("out")
    m.set_defaults(run=_merge_dir)
    s = sub.add_parser("seat-config", help="the seat settings served by /api/config")
    actions = s.add_subparsers(dest="action", required=True)
    si = actions.add_parser("import", help="load the original server's config.json")
    si.add_argument("file")
    si.set_defaults(run=_seat_config_import)
    actions.add_parser("show", help="print the seat settings").set_defaults(run=_seat_config_show)
    pm = sub.add_parser("prune-metrics", help="remove the metrics files of processes that no longer run")
    pm.add_argument("--dir", help="multiprocess directory (default PROMETHEUS_MULTIPROC_DIR)")
    pm.set_defaults(run=_prune_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.run(args)
    except ProctorError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
