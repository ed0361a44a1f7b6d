"""The FFmpeg engine: turn an ordered list of uploaded recording segments into one verified video.

Pure file-in, file-out code: no database, no Celery, no Flask. Everything else in proctor decides
*when* to merge; this package decides *how*, and refuses to hand back anything it has not checked.
How a merge goes, step by step, is described in ``engine``; how ffmpeg is kept on a leash, in
``runner``.

**The container is chosen here, not by the caller**: the suffix of ``output`` is replaced by
``.webm`` (VP8/VP9/AV1 with Opus/Vorbis, stream copy) or ``.mp4`` (everything else), and the path
actually written is ``MergeReport.output``.

Errors: ``MediaError`` means this input cannot produce a recording (retrying will not help);
``MediaTimeout`` means the deadline passed (a retry may succeed on a less loaded machine). An
``OSError`` (disk full, ffmpeg not installed) is left to propagate: it is not a property of the
input.

Modules: ``models`` (the values and errors), ``runner`` (processes, deadlines, progress),
``probe`` (ffprobe), ``quick_probe`` (ffprobe's description read in-process with PyAV, for each
upload and each output's read-back; importing this package loads PyAV, which is why the web app
imports no part of it), ``plan`` (which bytes form which part), ``args`` (ffmpeg argument lists),
``verify`` (checking the output), ``scratch`` (temporary files), ``engine`` (the entry points) and
``folders`` (ordering a folder of segments for the command line).
"""
from .engine import merge_directory, merge_segments
from .folders import order_directory
from .models import MediaError, MediaTimeout, MergeReport, ProbeInfo, Segment
from .probe import probe

__all__ = [
    "MediaError",
    "MediaTimeout",
    "Segment",
    "ProbeInfo",
    "MergeReport",
    "probe",
    "merge_segments",
    "order_directory",
    "merge_directory",
]
