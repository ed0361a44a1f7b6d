"""The values the merge engine takes and returns, and the errors it raises."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path


class MediaError(Exception):
    """Nothing playable can be produced from these inputs."""


class MediaTimeout(MediaError):
    """ffmpeg or ffprobe ran past the deadline and was killed; the caller may retry."""


@dataclass
class Segment:
    seq: int
    path: Path
    captured_at: datetime | None = None
    # What ffprobe said of these bytes when they arrived, if the caller kept it: the plan then
    # probes this segment no more (see ``engine``).
    probe: ProbeInfo | None = None


@dataclass
class ProbeInfo:
    format_name: str
    duration: float | None
    video_codec: str | None
    width: int | None
    height: int | None
    has_audio: bool
    # Beyond the basics: what else must match for stream copy to be safe.
    audio_codec: str | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_extradata: str | None = None
    audio_extradata: str | None = None

    @property
    def family(self) -> str:
        """The demuxer family: "mp4", "matroska" or "mpegts"."""
        if self.format_name.startswith("mov"):
            return "mp4"
        if self.format_name.startswith("matroska"):
            return "matroska"
        return self.format_name


@dataclass
class MergeReport:
    output: Path
    size: int
    duration: float
    sha256: str
    method: str
    segments_used: list[int]
    skipped: list[dict]
    order_warnings: list[str]
    expected_duration: float | None = None
    fallback_reason: str | None = None
    # How the plan learnt the segments' streams: "stored" (every description given by the
    # caller), "probed" (ffprobe on each segment the caller did not describe), or "probed again"
    # (a merge from the given descriptions failed and was planned afresh).
    plan: str = "probed"
    probes_run: int = 0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["output"] = str(self.output)
        return data
