"""Many sessions finishing at the same moment, as at an exam's end: every finish is taken and
every session gets its queued recording. On MariaDB/MySQL a finish that updated the (still
missing) recording row before inserting it took a gap lock, and two sessions finishing at once
deadlocked on each other's gap (a 500 to one of them, seen at a hall's end)."""
from __future__ import annotations

import threading

from proctor import sessions
from tests.helpers import unique

FINISHING = 24


def test_sessions_finishing_at_once_all_finish(api):
    exam = api.create_exam()
    tag = unique("")
    joined = [api.join(exam["id"], f"end{tag}-{n}") for n in range(FINISHING)]
    start = threading.Barrier(FINISHING)
    outcomes: dict[int, object] = {}

    def finish(session_id: int) -> None:
        start.wait(timeout=60)
        try:
            outcomes[session_id] = sessions.mark_finished(session_id, None)
        except Exception as err:  # noqa: BLE001 - what went wrong is the finding
            outcomes[session_id] = err

    threads = [threading.Thread(target=finish, args=(s["session_id"],)) for s in joined]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == {s["session_id"]: True for s in joined}
    for s in joined:
        view = api.session(s)
        assert view["state"] in ("finished", "merging", "merged", "failed") and view["recording"] is not None, view
