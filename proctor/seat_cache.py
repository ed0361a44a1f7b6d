"""What a desktop seat's heartbeat needs, in Redis, so that it reads no database.

Two entries, read by the seat heartbeat's script together with the presence sets (one round trip):

- a seat's binding, ``seat:<exam>:<student>`` = ``"<session> <address> <token hash>"``. The login
  writes it (it decides the binding); a heartbeat that had to read the database fills it only where
  it is missing, so an older read can never overwrite a newer login. The token hash stamps it: a
  login again, or a browser taking the session over, issues a new token and drops the old one from
  the token cache, after which the entry no longer vouches for anything. Kept ``SEAT_TTL_S``.
- an exam's end, ``exam-end:<exam>`` = ``"<ends_at> <scheduled_ends_at>"`` (epoch seconds), dropped
  whenever an exam's times change and kept at most ``EXAM_END_TTL_S`` (a heartbeat that read the
  end just before a change and stored it just after is wrong for that long at most).

The session's state needs no entry: a session is tracked in the presence sets exactly while open.
Anything missing or not matching sends the heartbeat the long way, through the database.
"""
from __future__ import annotations

from datetime import datetime

from . import redis_client

SEAT_TTL_S = 600
EXAM_END_TTL_S = 10


def seat_key(exam_id: int, student_id: str) -> str:
    return redis_client.key("seat", exam_id, student_id)


def exam_end_key(exam_id: int) -> str:
    return redis_client.key("exam-end", exam_id)


def token_prefix() -> str:
    """The token cache's key of a token hash is this prefix and the hash (``tokens.cache_key``)."""
    return redis_client.key("token", "")


def bind(exam_id: int, student_id: str, session_id: int, client_addr: str, token_hash: str) -> None:
    """The login's binding, over whatever was cached."""
    redis_client.client().set(seat_key(exam_id, student_id), f"{session_id} {client_addr} {token_hash}",
                              ex=SEAT_TTL_S)


def remember(exam_id: int, student_id: str, session_id: int, client_addr: str, token_hash: str,
             ends_at: datetime, scheduled_ends_at: datetime) -> None:
    """What a heartbeat read from the database, where nothing newer is cached."""
    pipe = redis_client.client().pipeline(transaction=False)
    pipe.set(seat_key(exam_id, student_id), f"{session_id} {client_addr} {token_hash}", ex=SEAT_TTL_S, nx=True)
    pipe.set(exam_end_key(exam_id), f"{ends_at.timestamp()} {scheduled_ends_at.timestamp()}", ex=EXAM_END_TTL_S,
             nx=True)
    pipe.execute()


def forget_exam_end(exam_id: int) -> None:
    redis_client.client().delete(exam_end_key(exam_id))
