"""Who is online, kept in Redis so a heartbeat never writes to the database.

A sorted set holds every active, online session scored by its last heartbeat (epoch seconds).
The status check takes the stale end of it by score (cost grows with what changed, not with how
many students are connected), moves those sessions to an ``offline`` set and records the change in
the database. The next heartbeat of an offline session finds it in that set and records it
back online. Last-heartbeat times reach the database in batches from the status check.

A heartbeat works while the database is away: a presence change it cannot write then waits in
Redis, and the next sweep writes it (with its own time) before any newer change.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import bindparam, select, update

from . import redis_client, states, tokens
from .clock import utcnow
from .db import engine
from .errors import DatabaseUnavailable
from .schema import presence_events, sessions

# Only sessions whose heartbeat is still older than the cutoff move, atomically, so a heartbeat
# arriving during the sweep is never lost.
_SWEEP = """
local moved = {}
for _, sid in ipairs(redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  redis.call('zrem', KEYS[1], sid)
  redis.call('sadd', KEYS[2], sid)
  table.insert(moved, sid)
end
return moved
"""


# The heartbeat itself, in the scripts that first check who is calling (a student's token here, a
# seat's binding in ``legacy``). Only tracked sessions (joined, not finished) are touched, so a late
# heartbeat of a finished session cannot put it back into the sweep. Returns 0 untracked, 1 online,
# 2 back from offline.
BEAT_LUA = """
local function beat(hb, offline, sid, now)
  if redis.call('srem', offline, sid) == 1 then
    redis.call('zadd', hb, now, sid)
    return 2
  end
  if redis.call('zscore', hb, sid) then
    redis.call('zadd', hb, now, sid)
    return 1
  end
  return 0
end
"""

# -1 when a token's cache entry (KEYS[3], given with ARGV[3] = "1") does not name the session, so
# that a student's heartbeat is authenticated and recorded in one round trip.
_HEARTBEAT = BEAT_LUA + """
if ARGV[3] == '1' and redis.call('get', KEYS[3]) ~= ARGV[1] then
  return -1
end
return beat(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""

# Forget a deferred change only if no newer one replaced it meanwhile.
_FORGET_IF_SAME = """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('hdel', KEYS[1], ARGV[1])
end
return 0
"""


def set_keys() -> tuple[str, str]:
    """The sorted set of online sessions and the set of offline ones."""
    return redis_client.key("presence", "heartbeats"), redis_client.key("presence", "offline")


def track(session_id: int, now: float | None = None) -> None:
    """Start (or resume) presence tracking of a session, as online."""
    hb, offline = set_keys()
    pipe = redis_client.client().pipeline()
    pipe.zadd(hb, {str(session_id): now or time.time()})
    pipe.srem(offline, str(session_id))
    pipe.execute()


def forget(session_id: int) -> None:
    """Stop tracking a session that has finished."""
    hb, offline = set_keys()
    pipe = redis_client.client().pipeline()
    pipe.zrem(hb, str(session_id))
    pipe.srem(offline, str(session_id))
    pipe.execute()


def heartbeat(session_id: int, token_hash: str | None = None) -> bool | None:
    """Record a heartbeat; False when the session is not tracked (finished, or never joined).

    With ``token_hash``, only if the token cache says that token is the session's (None if it
    does not: not cached, or another session's; the caller then authenticates the long way)."""
    outcome = _beat(session_id, token_hash)
    if outcome == 0 and reseed_if_lost():  # Redis lost the sets since the last status check
        outcome = _beat(session_id, token_hash)
    if outcome == 2:
        back_online(session_id)
    return None if outcome == -1 else outcome != 0


def back_online(session_id: int) -> None:
    """A heartbeat found the session offline (and has put it back online in Redis): record it."""
    _record_or_defer([session_id], "online")


def _beat(session_id: int, token_hash: str | None) -> int:
    hb, offline = set_keys()
    token_key = tokens.cache_key(token_hash) if token_hash else hb
    # EVALSHA: the script's text is sent once per connection, not with every heartbeat.
    script = redis_client.client().register_script(_HEARTBEAT)
    return script(keys=[hb, offline, token_key], args=[session_id, time.time(), "1" if token_hash else "0"])


def last_seen(session_ids: list[int]) -> dict[int, datetime]:
    """Freshest heartbeat times from Redis (the database lags by up to one status check)."""
    if not session_ids:
        return {}
    hb, _ = set_keys()
    scores = redis_client.client().zmscore(hb, [str(s) for s in session_ids])
    return {
        sid: datetime.fromtimestamp(score, timezone.utc)
        for sid, score in zip(session_ids, scores)
        if score is not None
    }


def insert_event(conn, session_id: int, kind: str, at: datetime) -> None:
    conn.execute(presence_events.insert().values(session_id=session_id, kind=kind, at=at))


def record_change(session_ids: list[int], kind: str, at: datetime | None = None) -> list[int]:
    """Write a presence change and its events; returns the sessions whose presence really changed."""
    with engine().begin() as conn:
        return write_change(conn, session_ids, kind, at or utcnow())


def write_change(conn, session_ids: list[int], kind: str, at: datetime) -> list[int]:
    """``record_change`` within the caller's transaction."""
    changed = []
    for sid in session_ids:
        result = conn.execute(
            update(sessions)
            .where(sessions.c.id == sid, sessions.c.presence != kind)
            .values(presence=kind)
        )
        if result.rowcount:
            changed.append(sid)
    if changed:
        conn.execute(presence_events.insert(), [{"session_id": s, "kind": kind, "at": at} for s in changed])
    return changed


def history(session_id: int) -> list:
    """The session's presence changes (rows of ``kind``: online or offline, and ``at``), oldest
    first: the join, each silence the status check noticed, each return, and the finish."""
    with engine().connect() as conn:
        return conn.execute(select(presence_events.c.kind, presence_events.c.at)
                            .where(presence_events.c.session_id == session_id)
                            .order_by(presence_events.c.at, presence_events.c.id)).all()


def _pending_key() -> str:
    return redis_client.key("presence", "pending")


def _record_or_defer(session_ids: list[int], kind: str) -> None:
    """``record_change``, or, while the database is away, keep the change in Redis for the next
    sweep: the presence in Redis has already changed and the caller's answer stands."""
    try:
        record_change(session_ids, kind)
    except DatabaseUnavailable:
        entry = f"{kind} {time.time()}"
        redis_client.client().hset(_pending_key(), mapping={str(sid): entry for sid in session_ids})


def _record_deferred() -> int:
    """Write the presence changes an outage kept in Redis, oldest first; returns how many.

    Only those Redis still shows: a session finished (no longer tracked) or moved since had its
    newer change written already."""
    r = redis_client.client()
    hb, offline = set_keys()
    pending = r.hgetall(_pending_key())
    for sid, entry in sorted(pending.items(), key=lambda item: float(item[1].split()[1])):
        kind, at = entry.split()
        still = r.zscore(hb, sid) is not None if kind == "online" else r.sismember(offline, sid)
        if still:
            record_change([int(sid)], kind, at=datetime.fromtimestamp(float(at), timezone.utc))
        r.eval(_FORGET_IF_SAME, 1, _pending_key(), sid, entry)
    return len(pending)


def sweep_offline(offline_after_s: int, now: float | None = None, batch: int = 10000) -> list[int]:
    """Mark sessions silent for longer than ``offline_after_s`` offline; returns them.

    Changes deferred by a database outage are written first, so a newer one is never overwritten
    by an older one."""
    _record_deferred()
    hb, offline = set_keys()
    cutoff = (now or time.time()) - offline_after_s
    moved: list[int] = []
    while True:
        chunk = redis_client.client().eval(_SWEEP, 2, hb, offline, cutoff, batch)
        moved.extend(int(s) for s in chunk)
        if len(chunk) < batch:
            break
    if moved:
        _record_or_defer(moved, "offline")
    return moved


def flush_heartbeats(now: float | None = None) -> int:
    """Write the last-heartbeat times that changed since the previous flush, in one batch."""
    hb, _ = set_keys()
    mark = redis_client.key("presence", "flushed_at")
    r = redis_client.client()
    now = now or time.time()
    since = r.get(mark) or "-inf"
    changed = r.zrangebyscore(hb, f"({since}" if since != "-inf" else since, now, withscores=True)
    if changed:
        stmt = (
            update(sessions)
            .where(sessions.c.id == bindparam("sid"))
            .values(last_heartbeat_at=bindparam("at"))
        )
        with engine().begin() as conn:
            conn.execute(
                stmt,
                [
                    {"sid": int(sid), "at": datetime.fromtimestamp(score, timezone.utc)}
                    for sid, score in changed
                ],
            )
    r.set(mark, now)
    return len(changed)


def reseed_if_lost() -> int:
    """After a Redis restart that lost the presence keys, rebuild them from the database.

    A marker key tells whether the sets are the ones this process family built; without it, every
    active session is put back with its last known heartbeat so silence is still detected.
    """
    hb, offline = set_keys()
    marker = redis_client.key("presence", "seeded")
    r = redis_client.client()
    if r.exists(marker):
        return 0
    with engine().connect() as conn:
        rows = conn.execute(
            select(sessions.c.id, sessions.c.presence, sessions.c.last_heartbeat_at, sessions.c.joined_at)
            .where(sessions.c.state == states.ACTIVE)
        ).all()
    pipe = r.pipeline()
    for sid, presence, last_hb, joined in rows:
        if presence == "offline":
            pipe.sadd(offline, str(sid))
        else:
            pipe.zadd(hb, {str(sid): (last_hb or joined).timestamp()}, nx=True)
    pipe.set(marker, "1")
    pipe.execute()
    return len(rows)
