"""What ffprobe would say about an upload, read in-process with PyAV (FFmpeg's libraries).

Each upload is described once when it arrives (``segment_probes``). Spawning ffprobe for that
cost about 90 ms of CPU, 75 ms of it ffprobe loading its libraries: at 50 uploads a second (a
hall of 3,000 seats sending a segment a minute) that was four cores. Opened here, in the worker
process whose libraries are loaded already, the same description costs a few milliseconds.

It is a cache, not the authority: ffprobe still probes every segment the merge finds
undescribed, is asked about any output this reading cannot accept (``verify``), and a merge
planned from descriptions that fails is planned again from fresh ffprobe probes (``engine``).
The description is ffprobe's JSON for the fields ``probe._probe_info`` reads, rendered as
ffprobe renders them (durations as "%f" seconds, extradata as "SHA256:<hex>" and absent when
empty), so one function builds ``ProbeInfo`` from either and a test (tests/test_quick_probe.py)
asserts they agree on every kind of upload. Where they could not agree the answer is None and
the merge asks ffprobe: a stream without a decoder in PyAV's build (no codec context to read).

The uploads are hostile input parsed by C code inside the worker: the same guards as ffprobe
(``file`` protocol only, the three accepted demuxers, ``runner.DEMUXERS``), a time limit on
opening and reading the headers (FFmpeg's interrupt callback), and the Celery task that calls
this is acknowledged on receipt and never redelivered (``worker``): a file that crashes the
parser kills one pool process once and loses one description, which costs its merge one ffprobe,
instead of crashing every worker that picks the message up again. A parser stuck inside one
frame, where the interrupt callback is not asked, ends at that task's hard time limit.

Importing PyAV loads FFmpeg (about 90 ms and 30 MB), which only what merges needs (the merge
worker, the command line); the web app imports no ``proctor.media``.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av

from .models import MediaError, MediaTimeout, ProbeInfo
from .probe import _probe_info
from .runner import DEMUXERS, _url

QUICK_PROBE_TIMEOUT = 20.0
_KINDS = ("video", "audio")


def quick_probe(path: Path, *, timeout: float = QUICK_PROBE_TIMEOUT) -> ProbeInfo | None:
    """ffprobe's ``ProbeInfo`` of ``path``, without ffprobe; None when only ffprobe can say.

    MediaError when FFmpeg cannot read the file as mp4, webm or ts (ffprobe would refuse it too),
    MediaTimeout when opening it took longer than ``timeout``.
    """
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(DEMUXERS),
               # ffprobe's default, which changes what an MPEG-TS with several programs shows.
               "scan_all_pmts": "1"}
    try:
        with av.open(_url(path), container_options=options, timeout=timeout) as container:
            data = _as_ffprobe_json(container)
    except av.ExitError:
        raise MediaTimeout(f"not read within the time limit ({timeout:.1f}s)") from None
    except av.FFmpegError as err:
        raise MediaError(err.strerror or str(err)) from None
    return None if data is None else _probe_info(data)


def _as_ffprobe_json(container) -> dict | None:
    streams = []
    for stream in container.streams:
        if stream.type not in _KINDS:
            streams.append({"codec_type": stream.type})
            continue
        codec = stream.codec_context.codec if stream.codec_context else None
        if codec is None:
            return None
        streams.append(_stream_fields(stream, stream.codec_context, codec))
    return {"format": {"format_name": container.format.name,
                       "duration": _seconds(container.duration, Fraction(1, av.time_base))},
            "streams": streams}


def _stream_fields(stream, context, codec) -> dict:
    fields = {
        "codec_type": stream.type,
        # ffprobe names the codec (the descriptor), not the decoder PyAV chose ("av1", not "libdav1d").
        "codec_name": codec.canonical_name,
        "disposition": {"attached_pic": int(bool(stream.disposition & av.stream.Disposition.attached_pic))},
        "duration": _seconds(stream.duration, stream.time_base),
        "extradata_hash": _extradata_hash(context.extradata),
    }
    if stream.type == "video":
        fields.update(width=context.width, height=context.height,
                      pix_fmt=context.format.name if context.format else None)
    else:
        fields.update(sample_rate=context.sample_rate, channels=context.channels)
    return fields


def _seconds(ts: int | None, time_base) -> str | None:
    """A timestamp as ffprobe prints it: ts * av_q2d(time_base), "%f"."""
    if ts is None or time_base is None:
        return None
    return f"{ts * (time_base.numerator / time_base.denominator):f}"


def _extradata_hash(extradata: bytes | None) -> str | None:
    """ffprobe's ``-show_data_hash sha256``: "SHA256:<lowercase hex>", absent when empty."""
    if not extradata:
        return None
    return "SHA256:" + hashlib.sha256(extradata).hexdigest()
