"""Synthetic recordings for tests, generated with ffmpeg's lavfi sources.

Clips are tiny (320x240, low frame rate, a second or two) so a test that makes a handful of them
stays well under a second. Every function returns the path(s) it wrote and raises
``subprocess.CalledProcessError`` with ffmpeg's message if generation fails.
"""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

FFMPEG = os.environ.get("PROCTOR_TEST_FFMPEG", "ffmpeg")

_VIDEO_ENCODERS = {
    # Fast settings: the content does not matter, only the stream layout does.
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
}
_AUDIO_ENCODERS = {
    "mp4": ["-c:a", "aac", "-b:a", "64k"],
    "ts": ["-c:a", "aac", "-b:a", "64k"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
}
_MUXERS = {"mp4": "mp4", "ts": "mpegts", "webm": "webm"}


def _sources(seconds: float, size: str, rate: int, audio: bool, pattern: str) -> list[str]:
    args = ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    return args


def _encode_args(seconds: float, size: str, codec: str, container: str, audio: bool,
                 rate: int, pattern: str) -> list[str]:
    if codec not in _VIDEO_ENCODERS:
        raise ValueError(f"unknown codec {codec!r}")
    if container not in _MUXERS:
        raise ValueError(f"unknown container {container!r}")
    args = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error"]
    args += _sources(seconds, size, rate, audio, pattern)
    # A keyframe every second, like a recorder configured for seekable segments.
    args += _VIDEO_ENCODERS[codec] + ["-g", str(rate)]
    if audio:
        args += _AUDIO_ENCODERS[container]
    return args


def make_clip(path: Path, seconds: float = 1.0, size: str = "320x240", codec: str = "h264",
              container: str = "mp4", audio: bool = True, *, rate: int = 15,
              pattern: str = "testsrc2", live: bool = False,
              video_args: tuple[str, ...] = ()) -> Path:
    """Write a self-contained clip.

    ``live=True`` writes the container as a non-seekable stream (through a pipe), the way a
    browser's MediaRecorder does: a WebM then has no Duration element and no cues.
    ``video_args`` are extra encoder options (e.g. ``("-profile:v", "main")``).
    """
    path = Path(path)
    args = _encode_args(seconds, size, codec, container, audio, rate, pattern)
    args += [*video_args, "-f", _MUXERS[container]]
    if live:
        data = subprocess.run(args + ["pipe:1"], check=True, capture_output=True).stdout
        path.write_bytes(data)
    else:
        subprocess.run(args + ["-y", f"file:{path.resolve()}"], check=True, capture_output=True)
    return path


def record_stream(seconds: float, *, size: str = "320x240", container: str = "webm",
                  audio: bool = True, rate: int = 15) -> bytes:
    """The bytes a browser MediaRecorder would produce for one continuous recording.

    ``container="webm"`` gives a live VP8/Opus WebM (Chrome, Firefox); ``"mp4"`` a fragmented
    H.264/AAC MP4 with an empty moov (Safari).
    """
    codec = "vp8" if container == "webm" else "h264"
    args = _encode_args(seconds, size, codec, container, audio, rate, "testsrc2")
    if container == "webm":
        args += ["-cluster_time_limit", "250", "-f", "webm"]
    else:
        args += ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"]
    return subprocess.run(args + ["pipe:1"], check=True, capture_output=True).stdout


def make_mediarecorder_chunks(directory: Path, seconds: float = 2.0, n_chunks: int = 4, *,
                              container: str = "webm", audio: bool = True,
                              size: str = "320x240", prefix: str = "chunk_") -> list[Path]:
    """Record one stream and cut it into ``n_chunks`` byte ranges, like time-sliced uploads.

    Only the first chunk carries the container header; the cuts fall at arbitrary byte
    offsets, so later chunks are not readable on their own. Returns the chunk paths in order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = record_stream(seconds, size=size, container=container, audio=audio)
    step = len(data) // n_chunks
    paths = []
    for i in range(n_chunks):
        end = len(data) if i == n_chunks - 1 else (i + 1) * step
        path = directory / f"{prefix}{i:04d}.{container}"
        path.write_bytes(data[i * step:end])
        paths.append(path)
    return paths


def make_garbage(path: Path, size: int = 64 * 1024, seed: int = 1) -> Path:
    """Random bytes: what a broken upload or a hostile client sends."""
    path = Path(path)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def ffprobe_streams(path: Path, ffprobe: str = "ffprobe") -> dict:
    """Format and streams of ``path`` as ffprobe's JSON, for assertions."""
    import json

    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json",
         f"file:{Path(path).resolve()}"],
        check=True, capture_output=True,
    ).stdout
    return json.loads(out)
