"""media.quick_probe (PyAV, in-process) says what media.probe (ffprobe) says, for every kind of
upload the server sees: the descriptions kept at upload stand in for ffprobe's at the merge."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from proctor.media import MediaError, MediaTimeout, probe
from proctor.media.quick_probe import quick_probe
from tests.media_helpers import (
    FFMPEG,
    make_clip,
    make_garbage,
    make_mediarecorder_chunks,
    record_stream,
)

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="needs ffmpeg and ffprobe"
)

LAVFI_VIDEO = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15:duration=1"]
LAVFI_AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1"]


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", *args],
                   check=True, capture_output=True)


def chrome_h264_webm(path: Path) -> Path:
    """Chrome's MediaRecorder with codecs=h264: H.264 in a live Matroska stream, no Duration."""
    out = subprocess.run([FFMPEG, "-loglevel", "error", *LAVFI_VIDEO, *LAVFI_AUDIO, "-c:v",
                          "libx264", "-preset", "ultrafast", "-c:a", "libopus", "-f", "matroska",
                          "pipe:1"], check=True, capture_output=True).stdout
    path.write_bytes(out)
    return path


def av1_webm(path: Path) -> Path:
    ffmpeg(*LAVFI_VIDEO, "-c:v", "libaom-av1", "-cpu-used", "8", "-b:v", "200k", "-y", str(path))
    return path


def cover_first_mp4(path: Path, clip: Path) -> Path:
    """A cover picture as the first video stream: both must skip it for the recording's."""
    png = path.with_suffix(".png")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", "-y", str(png))
    ffmpeg("-i", str(clip), "-i", str(png), "-map", "1", "-map", "0", "-c", "copy",
           "-disposition:v:0", "attached_pic", "-y", str(path))
    return path


def png_named_mp4(path: Path) -> Path:
    png = path.with_suffix(".png")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", "-y", str(png))
    path.write_bytes(png.read_bytes())
    return path


def truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


READABLE = {
    "h264+aac mp4": lambda d: make_clip(d / "a.mp4"),
    "h264 mp4 without audio": lambda d: make_clip(d / "a.mp4", audio=False),
    "vp8+opus webm": lambda d: make_clip(d / "a.webm", codec="vp8", container="webm"),
    "vp9+opus webm": lambda d: make_clip(d / "a.webm", codec="vp9", container="webm"),
    "vp9 webm without audio": lambda d: make_clip(d / "a.webm", codec="vp9", container="webm", audio=False),
    "av1 webm": lambda d: av1_webm(d / "a.webm"),
    "live webm without duration": lambda d: make_clip(d / "a.webm", codec="vp8", container="webm", live=True),
    "MediaRecorder webm": lambda d: written(d / "a.webm", record_stream(2.0, container="webm")),
    "MediaRecorder webm, first time slice": lambda d: make_mediarecorder_chunks(d, container="webm")[0],
    "MediaRecorder h264 webm": lambda d: chrome_h264_webm(d / "a.webm"),
    "Safari fragmented mp4": lambda d: written(d / "a.mp4", record_stream(2.0, container="mp4")),
    "Safari fragmented mp4, first time slice": lambda d: make_mediarecorder_chunks(d, container="mp4")[0],
    "mpegts": lambda d: make_clip(d / "a.ts", container="ts"),
    "mpegts without audio": lambda d: make_clip(d / "a.ts", container="ts", audio=False),
    "mpegts through a pipe": lambda d: make_clip(d / "a.ts", container="ts", live=True),
    "mp4 with a cover picture first": lambda d: cover_first_mp4(d / "a.mp4", make_clip(d / "b.mp4")),
    "webm cut in half": lambda d: truncated(d / "a.webm", make_clip(d / "b.webm", codec="vp8", container="webm")),
}

UNREADABLE = {
    "random bytes": lambda d: make_garbage(d / "a.mp4"),
    "a PNG named .mp4": lambda d: png_named_mp4(d / "a.mp4"),
    "an empty file": lambda d: written(d / "a.mp4", b""),
    "mp4 cut in half": lambda d: truncated(d / "a.mp4", make_clip(d / "b.mp4")),
    "MediaRecorder webm, a later time slice": lambda d: make_mediarecorder_chunks(d, container="webm")[1],
    "Safari fragmented mp4, a later time slice": lambda d: make_mediarecorder_chunks(d, container="mp4")[1],
}


@pytest.mark.parametrize("kind", READABLE)
def test_describes_as_ffprobe_does(kind, tmp_path):
    path = READABLE[kind](tmp_path)
    described = quick_probe(path)
    assert described is not None, "no family here is left to ffprobe"
    assert described == probe(path)


@pytest.mark.parametrize("kind", UNREADABLE)
def test_refuses_what_ffprobe_refuses(kind, tmp_path):
    path = UNREADABLE[kind](tmp_path)
    with pytest.raises(MediaError) as ffprobe_said:
        probe(path)
    with pytest.raises(MediaError) as pyav_said:
        quick_probe(path)
    assert str(pyav_said.value) == str(ffprobe_said.value)


def test_hashes_extradata_as_ffprobe_prints_it(tmp_path):
    mp4 = quick_probe(make_clip(tmp_path / "a.mp4"))
    assert mp4.video_extradata.startswith("SHA256:") and len(mp4.video_extradata) == 7 + 64
    assert quick_probe(make_clip(tmp_path / "a.webm", codec="vp8", container="webm")).video_extradata is None


def test_a_file_not_read_within_the_time_limit_is_not_described(tmp_path):
    with pytest.raises(MediaTimeout):
        quick_probe(make_clip(tmp_path / "a.mp4"), timeout=1e-9)


def test_a_description_lost_with_its_worker_process_is_not_delivered_again():
    """The parser runs in the pool process: an upload that crashes it must not come back to crash
    the next one (the merge probes it with ffprobe instead)."""
    import celery_tasks

    task = celery_tasks.probe_segment_task
    assert task.acks_late is False and task.reject_on_worker_lost is False
    assert 0 < task.time_limit < celery_tasks.celery_app.conf.task_time_limit
    assert celery_tasks.merge_videos_task.acks_late is True  # merges stay at-least-once
