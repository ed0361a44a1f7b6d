"""The ffmpeg argument lists: stream copy when the parts allow it, else a re-encode graph."""
from __future__ import annotations

import os
from pathlib import Path

from .models import ProbeInfo
from .plan import _Part
from .runner import _input_guard, _url
from .scratch import _TempFiles

WEBM_VIDEO = {"vp8", "vp9", "av1"}
WEBM_AUDIO = {None, "opus", "vorbis"}
MP4_VIDEO = {"h264", "hevc"}
MP4_AUDIO = {None, "aac", "mp3", "opus"}
REENCODE_VIDEO = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
REENCODE_AUDIO = ["-c:a", "aac", "-b:a", "128k"]


def _copy_key(info: ProbeInfo) -> tuple:
    # With stream copy the output header describes the first file only. A later file with
    # another size or codec is dropped or decoded as garbage; one with other parameter sets
    # (extradata) may only play in decoders that follow in-band changes. All must match.
    return (info.family, info.video_codec, info.width, info.height, info.pix_fmt,
            info.video_extradata, info.has_audio, info.audio_codec, info.sample_rate,
            info.channels, info.audio_extradata)


def _copy_container(parts: list[_Part]) -> str | None:
    """"webm" or "mp4" if all parts can be stream-copied into one file, else None."""
    if len({_copy_key(p.info) for p in parts}) != 1:
        return None
    info = parts[0].info
    audio = info.audio_codec if info.has_audio else None
    if info.video_codec in WEBM_VIDEO and audio in WEBM_AUDIO:
        return "webm"
    if info.video_codec in MP4_VIDEO and audio in MP4_AUDIO:
        return "mp4"
    return None


def _concat_list(paths: list[Path], temp: _TempFiles, name: str) -> Path:
    listing = temp.new(name, ".txt")
    lines = ["ffconcat version 1.0"]
    for path in paths:
        url = _url(path)
        if "\n" in url or "\r" in url:
            # The list is line-based and has no escape for a line break: use a link instead.
            link = temp.new("link", path.suffix[:8])
            link.symlink_to(os.path.abspath(path))
            url = _url(link)
        lines.append("file " + _concat_quote(url))
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _concat_quote(text: str) -> str:
    # Inside single quotes nothing is special except the closing quote, which is written as
    # close-quote, escaped quote, reopen-quote.
    return "'" + text.replace("'", "'\\''") + "'"


def _input_args(paths: list[Path], temp: _TempFiles, name: str) -> list[str]:
    if len(paths) == 1:
        return ["-fflags", "+genpts", *_input_guard(), "-i", _url(paths[0])]
    listing = _concat_list(paths, temp, name)
    return ["-fflags", "+genpts", "-f", "concat", "-safe", "0", *_input_guard("concat"),
            "-i", _url(listing)]


def _copy_args(parts: list[_Part], container: str, temp: _TempFiles) -> list[str]:
    args = _input_args([p.path for p in parts], temp, "list")
    args += ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy"]
    if container == "mp4":
        args += ["-movflags", "+faststart", "-f", "mp4"]
    else:
        args += ["-f", "webm"]
    return args


def _runs(parts: list[_Part]) -> list[list[_Part]]:
    """Consecutive parts that share stream parameters: one decoder input each."""
    runs: list[list[_Part]] = []
    for part in parts:
        if runs and _copy_key(runs[-1][-1].info) == _copy_key(part.info):
            runs[-1].append(part)
        else:
            runs.append([part])
    return runs


def _target_size(parts: list[_Part]) -> tuple[int, int]:
    """The frame size covering most of the recording (earliest wins a tie), made even."""
    weight: dict[tuple[int, int], float] = {}
    for part in parts:
        size = (part.info.width or 0, part.info.height or 0)
        weight[size] = weight.get(size, 0.0) + max(part.duration, 0.001)
    width, height = max(weight, key=lambda s: weight[s])  # dicts keep first-seen order
    if width < 2 or height < 2:
        width, height = 1280, 720
    return width - width % 2, height - height % 2


def _reencode_args(parts: list[_Part], temp: _TempFiles) -> list[str]:
    width, height = _target_size(parts)
    with_audio = any(p.info.has_audio for p in parts)
    runs = _runs(parts)
    args: list[str] = []
    graph: list[str] = []
    pads: list[str] = []
    for i, run in enumerate(runs):
        args += _input_args([p.path for p in run], temp, f"list-{i}")
        graph.append(_video_chain(i, width, height))
        pads.append(f"[v{i}]")
        if with_audio:
            graph.append(_audio_chain(i, run, last=i == len(runs) - 1))
            pads.append(f"[a{i}]")
    graph.append("".join(pads) + f"concat=n={len(runs)}:v=1:a={int(with_audio)}"
                 + ("[v][a]" if with_audio else "[v]"))
    args += ["-filter_complex", ";".join(graph), "-map", "[v]"]
    if with_audio:
        args += ["-map", "[a]", *REENCODE_AUDIO]
    # Screen recordings are variable-frame-rate; forcing CFR would invent thousands of frames.
    args += [*REENCODE_VIDEO, "-vsync", "vfr", "-max_muxing_queue_size", "4096",
             "-movflags", "+faststart", "-f", "mp4"]
    return args


def _video_chain(i: int, width: int, height: int) -> str:
    # Fit inside the target keeping the aspect ratio, then letterbox: nothing is cropped.
    return (f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease"
            f":force_divisible_by=2,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
            f"format=yuv420p[v{i}]")


def _audio_chain(i: int, run: list[_Part], *, last: bool) -> str:
    layout = "aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo"
    if run[0].info.has_audio:
        # async + first_pts keep sound on the picture's clock when an input's audio starts late.
        return f"[{i}:a:0]aresample=48000:async=1:first_pts=0,{layout}[a{i}]"
    # concat pads a short audio segment with silence up to its video's length, except the last
    # one, which must bring its own.
    seconds = max(sum(p.duration for p in run), 0.1) if last else 0.1
    return f"anullsrc=r=48000:cl=stereo,atrim=duration={seconds:.3f},{layout}[a{i}]"
