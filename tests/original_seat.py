"""A desktop seat that behaves as the original exam client does (docs/desktop-seat-protocol.md),
for tests of what a hall of unchanged seats loses: its clock, its counting, its upload queue, its
restarts and its end of exam.

What it copies from the original client, on purpose:
- the clock is naive local time: ``datetime.now()`` in the hall's zone, and the remaining time is
  ``datetime.fromisoformat(end_time) - datetime.now()`` (which raises on a time with an offset);
- ``sequence`` counts from 1 in memory only: a restarted client counts from 1 again;
- a segment is queued when recorded and sent later; a failed upload stays queued and is retried
  after later ones, so uploads arrive out of order and late;
- at its end timer it stops recording, sends what is still queued (the last segment after the
  exam's end), and only then logs out;
- multipart uploads with the original file name, ``timestamp`` = ``datetime.now().isoformat()``
  when the segment was queued, ``fps`` and ``quality`` fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import requests

from tests.helpers import SourceAddressAdapter


@dataclass
class Queued:
    sequence: int
    path: Path
    started: datetime  # naive local: the file name carries it
    timestamp: str  # naive local ISO with microseconds, when queued


class OriginalSeat:
    def __init__(self, base: str, student_id: str, student_name: str, zone: tzinfo, address: str = "127.0.0.1"):
        self.base, self.student_id, self.student_name, self.zone = base, student_id, student_name, zone
        self.address = address
        self.http = requests.Session()
        self.http.mount("http://", SourceAddressAdapter(address))
        self.exam_id: int | None = None
        self.end_time: str | None = None
        self.sequence = 0
        self.queue: list[Queued] = []
        self.sent: list[Queued] = []

    # --- the client's clock ---------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(self.zone).replace(tzinfo=None)

    def remaining(self) -> timedelta:
        """The client's own arithmetic on the server's end time."""
        return datetime.fromisoformat(self.end_time) - self.now()

    # --- calls ------------------------------------------------------------------------------
    def _json(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.base + path, json=body, timeout=30)

    def login(self) -> dict:
        r = self._json("/api/login", {"student_id": self.student_id, "student_name": self.student_name})
        body = r.json()
        if r.status_code == 200 and body.get("status") == "success":
            self.exam_id = body["exam_id"]
            self.end_time = body["end_time"]
            self.remaining()  # what the client computes at once: must not raise
        return {"http_status": r.status_code, **body}

    def heartbeat(self) -> dict:
        """A heartbeat, tried up to three times when the connection fails, as the original does."""
        for attempt in range(3):
            try:
                r = self._json("/api/heartbeat", {"student_id": self.student_id, "exam_id": self.exam_id})
                break
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        body = r.json()
        if r.status_code == 200 and "end_time" in body:
            self.end_time = body["end_time"]
            self.remaining()
        return {"http_status": r.status_code, **body}

    def logout(self) -> dict:
        r = self._json("/api/logout", {"student_id": self.student_id, "exam_id": self.exam_id})
        return {"http_status": r.status_code, **r.json()}

    # --- recording and the upload queue -----------------------------------------------------
    def record(self, clip: Path) -> Queued:
        """A segment finished recording: number it and queue it."""
        self.sequence += 1
        started = self.now()
        item = Queued(self.sequence, clip, started, self.now().isoformat())
        self.queue.append(item)
        return item

    def _file_name(self, item: Queued) -> str:
        return (f"recording_{self.student_id}_{self.exam_id}_{item.started:%Y%m%d_%H%M%S}"
                f"_seq_{item.sequence:04d}{item.path.suffix}")

    def upload(self, item: Queued) -> requests.Response:
        media_type = "video/webm" if item.path.suffix == ".webm" else "video/mp4"
        fields = {"student_id": self.student_id, "exam_id": str(self.exam_id), "timestamp": item.timestamp,
                  "sequence": str(item.sequence), "fps": "2", "quality": "80"}
        with open(item.path, "rb") as fh:
            files = {"video": (self._file_name(item), fh, media_type)}
            return self.http.post(self.base + "/api/screen_recording", data=fields, files=files, timeout=60)

    def send_queue(self, order: list[int] | None = None) -> list[requests.Response]:
        """Send the queued segments (in ``order`` of their positions in the queue when given);
        whatever is not answered with success stays queued, as in the original."""
        items = [self.queue[i] for i in order] if order is not None else list(self.queue)
        answers = []
        for item in items:
            r = self.upload(item)
            answers.append(r)
            if r.status_code == 200 and r.json().get("status") == "success":
                self.queue.remove(item)
                self.sent.append(item)
        return answers

    def restart(self) -> "OriginalSeat":
        """The client process ends (crash, closed by mistake, reboot) and starts again: the same
        student at the same seat, with nothing of its memory (counter, queue)."""
        return OriginalSeat(self.base, self.student_id, self.student_name, self.zone, self.address)
