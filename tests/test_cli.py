"""`python -m proctor.cli merge-dir DIR OUT`: the operator's merge of a folder from elsewhere."""
from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli
from tests.media_helpers import ffprobe_streams, make_clip


def test_merge_dir_merges_a_numbered_folder(tmp_path):
    folder = tmp_path / "seat-17"
    folder.mkdir()
    # seg_10 sorts before seg_2 as text; the sequence number must win.
    for n, seconds in ((1, 1.0), (2, 2.0), (10, 1.0)):
        make_clip(folder / f"seg_{n}.mp4", seconds=seconds)
    result = run_cli("merge-dir", str(folder), str(tmp_path / "out.mp4"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["segments_used"] == [0, 1, 2]  # positions in order_directory's order (tested in test_media)
    assert abs(float(ffprobe_streams(Path(report["output"]))["format"]["duration"]) - 4.0) <= 0.2


def test_merge_dir_of_nothing_is_a_clear_error(tmp_path):
    result = run_cli("merge-dir", str(tmp_path / "missing"), str(tmp_path / "out.mp4"))
    assert result.returncode == 1
    assert result.stderr.startswith("error:")
