"""The baselines of bench/suite.py: bare Flask endpoints served by the same Gunicorn settings.

``gunicorn -c gunicorn_config.py bench.bare_app:app`` (from the repository root). The routes have
the paths of the real ones so that the same wrk script drives both; they do nothing the real ones
need (no token, no database, no Redis):

- ``POST /api/sessions/<sid>/heartbeat`` and ``POST /api/heartbeat``: 204, the body unread;
- ``PUT /api/sessions/<sid>/segments/<seq>``: the body streamed to a new file under
  ``BENCH_UPLOAD_DIR`` in 1 MiB blocks while hashing it with SHA-256, fsynced and kept (201 with
  the hash): the least an upload that keeps what it acknowledged must do.

``bench.bare_app:one_redis_call`` is the same bare app whose heartbeats each make one Redis call
(an EVALSHA that puts the session's time into a sorted set, as the real heartbeat's script does
among its checks) before the 204: the most a heartbeat can do within its budget of one round trip
to Redis, and so how near the heartbeat target this stack can come at all.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time

import redis
from flask import Flask, jsonify, request

app = Flask(__name__)
BLOCK = 1024 * 1024


@app.post("/api/sessions/<int:sid>/heartbeat")
@app.post("/api/heartbeat")
def heartbeat(sid: int = 0):
    return "", 204


@app.put("/api/sessions/<int:sid>/segments/<int:seq>")
def upload(sid: int, seq: int):
    digest = hashlib.sha256()
    fd, _ = tempfile.mkstemp(dir=os.environ.get("BENCH_UPLOAD_DIR"), prefix=f"{sid}-{seq}-")
    with os.fdopen(fd, "wb") as out:
        while block := request.stream.read(BLOCK):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return jsonify({"sha256": digest.hexdigest()}), 201


one_redis_call = Flask("one_redis_call")
_redis = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
_beat = _redis.register_script("return redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])")


@one_redis_call.post("/api/sessions/<int:sid>/heartbeat")
@one_redis_call.post("/api/heartbeat")
def heartbeat_with_one_redis_call(sid: int = 0):
    _beat(keys=["bench:heartbeats"], args=[sid, time.time()])
    return "", 204
