"""The soak, short: 30 students on both front doors for a minute of exam on the whole stack (its
own Redis, database, Gunicorn, status worker, Beat and merge worker), with disconnects, client
restarts, retried and cut uploads, 100 idle connections (10 with partial headers) and the merge
worker stopped (SIGTERM) and started again mid-exam. ``scripts/soak.sh`` runs the full one.

It asserts what must hold however fast the machine is: no 5xx, no unexpected answer, every
acknowledged segment stored once and in a merged recording without gaps that lasts as long as the
clips together, and no process growing by ``Options.rss_growth_mib`` from warm-up to the end.
"""
from __future__ import annotations

from tests.soak import Options, report, run_soak


def test_a_short_soak_of_the_whole_stack_loses_nothing_and_stays_flat():
    figures = run_soak(Options(students=30, minutes=1, segment_s=5))
    print(report(figures))
    assert figures.problems == [], report(figures)
    assert figures.status_5xx["seen_by_clients"] == figures.status_5xx["in_access_log"] == 0
    segments = figures.segments
    assert segments["sent"] == segments["acknowledged"] == segments["stored"] == segments["merged"] > 0
    assert figures.heartbeats > 0
    for event in ("restarts (seat)", "restarts (token)", "disconnects (seat)", "disconnects (token)",
                  "retries of acknowledged uploads", "cut uploads"):
        assert figures.events.get(event, 0) > 0, (event, figures.events)
    assert figures.merge_worker == ["SIGTERM"]
    assert figures.rss_mib and all(row["warm_up"] is not None for row in figures.rss_mib)
