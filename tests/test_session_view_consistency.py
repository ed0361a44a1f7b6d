"""What the API shows of a session is one moment of it: a merge changes the session's state and
its recording's status in one transaction, and the view must never show half of that change (a
queued recording of a session still merging). Two separate reads did, now and then, while a
merge was retried."""
from __future__ import annotations

import threading

from proctor import sessions, states
from proctor.db import engine
from tests.helpers import unique

FLIPS = 300
# What the session's state must be for each status of its recording while a merge is retried.
STATE_OF = {states.MERGING: states.MERGING, states.QUEUED: states.FINISHED}


def test_the_view_never_shows_half_of_a_merge_attempt(api):
    exam = api.create_exam()
    sid = api.join(exam["id"], f"flip{unique('')}")["session_id"]
    with engine().begin() as conn:
        # The states owner directly: no merge job is queued, so no worker touches this session.
        assert states.finish(conn, sid, None)
    done = threading.Event()

    def retry_again_and_again() -> None:
        try:
            for _ in range(FLIPS):
                with engine().begin() as conn:
                    states.start_attempt(conn, sid, None)
                with engine().begin() as conn:
                    states.retry_later(conn, sid, "no space left on device")
        finally:
            done.set()

    flipper = threading.Thread(target=retry_again_and_again)
    flipper.start()
    seen = []
    try:
        while not done.is_set():
            view = sessions.session_view(sid)
            seen.append((view["recording"]["status"], view["state"]))
    finally:
        flipper.join(timeout=120)
    torn = [pair for pair in seen if STATE_OF[pair[0]] != pair[1]]
    assert not torn, f"{len(torn)} of {len(seen)} views showed half a change, e.g. {torn[:3]}"
    assert {status for status, _ in seen} == set(STATE_OF), "the reads never saw both sides of an attempt"
