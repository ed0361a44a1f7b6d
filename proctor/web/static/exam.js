// The browser exam page: a client of the token API (join, heartbeat, PUT segments, violations,
// finish) that loses no segment it has recorded.
//
// Segments: one MediaRecorder while the screen is shared, handing over a time slice every second;
// a segment is the slices of `segment_s` seconds (the join says how long). The slices are one
// byte stream whose first slice carries the WebM header, and the merge joins such a series again
// (a continuation chunk belongs to the head before it): the recording has no seam between
// segments. Restarting the recorder per segment made every segment a WebM of its own, but lost
// or doubled time at every restart under load (measured: 0.1 to 0.45 s per restart on a busy
// 2-core machine). A new recorder (after a reload, or when the
// screen is shared again) starts a new series with its own header. Each slice goes to IndexedDB
// at once, so a reload loses at most the last second: the slices of a segment cut short are sent
// as a segment of their own.
//
// Nothing recorded is lost: a segment waits in IndexedDB until the server has acknowledged it
// (201, or 200 for the same bytes again), and is sent with its SHA-256, oldest first, retried with
// exponential backoff (or as Retry-After says). The token stays in this tab's sessionStorage
// only; after a reload the page goes on with it from the server's next_seq and sends what
// IndexedDB holds. Every string shown comes from the page (#texts): this file has none to
// translate.
"use strict";

(function () {
  const root = document.getElementById("exam");
  if (!root) return;
  const examId = Number(root.dataset.exam);
  const text = JSON.parse(document.getElementById("texts").textContent);
  const $ = (id) => document.getElementById(id);
  const KEY = "proctor-exam-" + examId; // sessionStorage: this tab's session and token
  const MIME = ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm"].find(
    (t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
  const SLICE_MS = 1000;
  const MAX_BACKOFF_MS = 60000;
  const STOPPED_SHARING = "screen sharing stopped by the student"; // the violation's reason, for the teacher

  let joined = null; // the join's answer: session_id, token, heartbeat_interval_s, segment_s, ends_at
  let db = null;
  let stream = null;
  let current = null; // the recorder while the screen is shared: { recorder, from }
  let segment = null; // the segment its slices go to now: { seq, parts, capturedAt }
  let writes = Promise.resolve(); // slices written and segments closed, in the order they came
  let stoppedAt = 0;
  const open = new Set(); // seqs whose recorder has not finished writing
  let nextSeq = 0;
  let segmentTimer = null;
  let heartbeatTimer = null;
  let pumpTimer = null;
  let pumping = false;
  let pumpAgain = false;
  let failures = 0;
  let ending = false;
  let clockSkewMs = 0; // the server's clock minus this one
  const END_CHECK_MS = 60000; // how often the exam's end is asked again (a teacher may extend it)
  let endCheckedAt = 0; // performance.now() of the last time it was asked
  let checkingEnd = false;
  const counts = { recorded: 0, sent: 0, waiting: 0 };
  let recordedMs = 0;

  // --- what the student sees -------------------------------------------------------------------

  function show(section) {
    for (const id of ["join", "share", "taking", "done"]) $(id).hidden = !section.includes(id);
  }

  function problem(message) {
    $("problem").textContent = message || "";
    $("problem").hidden = !message;
  }

  function fill(template, seconds) {
    return template.replace("{s}", String(Math.ceil(seconds)));
  }

  function drawCounts() {
    $("count-recorded").textContent = counts.recorded;
    $("count-sent").textContent = counts.sent;
    $("count-waiting").textContent = counts.waiting;
    root.dataset.recorded = counts.recorded;
    root.dataset.sent = counts.sent;
    root.dataset.waiting = counts.waiting;
    root.dataset.recordedMs = Math.round(recordedMs + (current ? performance.now() - current.from : 0));
  }

  function drawTimeLeft() {
    if (!joined) return;
    const left = Math.max(0, Date.parse(joined.ends_at) - (Date.now() + clockSkewMs));
    const s = Math.floor(left / 1000);
    const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
    $("time-left").textContent = hms.map((n, i) => (i ? String(n).padStart(2, "0") : n)).join(":");
    if (left === 0 && !ending && root.dataset.state !== "done") endIfOver();
  }

  // The end this tab knows may be older than an extension: the server's end decides.
  async function endIfOver() {
    if (checkingEnd) return;
    checkingEnd = true;
    await refreshEnd();
    checkingEnd = false;
    const over = joined && Date.parse(joined.ends_at) <= Date.now() + clockSkewMs;
    if (over && !ending && root.dataset.state !== "done") {
      problem(text.over);
      endExam();
    }
  }

  // The exam's end as the server has it now; unreachable, the one this tab knows stays.
  async function refreshEnd() {
    endCheckedAt = performance.now();
    try {
      const response = await call("GET", sessionPath());
      if (!response.ok || !joined) return;
      const view = await response.json();
      if (view.exam_ends_at) {
        joined.ends_at = view.exam_ends_at;
        sessionStorage.setItem(KEY, JSON.stringify(joined));
      }
    } catch (err) {
      // offline: nothing to learn now
    }
  }

  function connection(message) {
    $("connection").textContent = message;
  }

  function state(name) {
    root.dataset.state = name;
    $("recording-state").textContent = name === "recording" ? text.recording : text.not_recording;
  }

  // --- IndexedDB: the pieces of every segment not yet acknowledged ----------------------------

  function request(r) {
    return new Promise((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }

  function openDb() {
    const r = indexedDB.open("proctor-exam", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("pieces", { keyPath: ["sid", "seq", "part"] });
    return request(r);
  }

  function store(mode) {
    return db.transaction("pieces", mode).objectStore("pieces");
  }

  function range(sid, seq) {
    return seq === undefined
      ? IDBKeyRange.bound([sid, -Infinity, -Infinity], [sid, Infinity, Infinity])
      : IDBKeyRange.bound([sid, seq, -Infinity], [sid, seq, Infinity]);
  }

  function savePiece(sid, seq, part, blob, capturedAt) {
    return request(store("readwrite").put({ sid, seq, part, blob, capturedAt }));
  }

  async function waitingSeqs() {
    const keys = await request(store("readonly").getAllKeys(range(joined.session_id)));
    return [...new Set(keys.map((k) => k[1]))].filter((seq) => !open.has(seq)).sort((a, b) => a - b);
  }

  async function highestStoredSeq() {
    const keys = await request(store("readonly").getAllKeys(range(joined.session_id)));
    return keys.length ? Math.max(...keys.map((k) => k[1])) : -1;
  }

  function forget(seq) {
    return request(store("readwrite").delete(range(joined.session_id, seq)));
  }

  // --- the token API ---------------------------------------------------------------------------

  function call(method, path, body, headers) {
    const h = Object.assign({}, headers);
    if (joined) h.Authorization = "Bearer " + joined.token;
    if (body !== undefined && !(body instanceof ArrayBuffer)) {
      h["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    return fetch(path, { method, headers: h, body, cache: "no-store", credentials: "omit" });
  }

  async function errorCode(response) {
    try {
      return (await response.json()).error.code;
    } catch (err) {
      return "";
    }
  }

  function retryAfterMs(response) {
    const seconds = Number(response.headers.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
  }

  function backoffMs() {
    failures += 1;
    const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (failures - 1));
    return base / 2 + Math.random() * (base / 2);
  }

  const sessionPath = () => "/api/sessions/" + joined.session_id;

  // --- joining ----------------------------------------------------------------------------------

  async function join(proof) {
    problem("");
    $("join-button").disabled = true; // one join at a time, its retries included
    let response;
    try {
      response = await call("POST", "/api/exams/" + examId + "/join", proof);
    } catch (err) {
      problem(text.unreachable);
      $("join-button").disabled = false;
      return;
    }
    if (response.status === 201) {
      $("join-button").disabled = false;
      for (const id of ["entry-code", "student-id", "invitation-code"]) $(id).value = "";
      begin(await response.json());
      return;
    }
    const code = response.status === 429 ? "too_many_requests" : await errorCode(response);
    const wait = retryAfterMs(response);
    if (code === "session_in_use" && wait) {
      problem(fill(text.in_use, wait / 1000));
      setTimeout(() => join(proof), wait);
      return;
    }
    problem(text.join_refused[code] || text.refused + " " + code);
    $("join-button").disabled = false;
  }

  function proofFromForm() {
    const invitation = $("invitation-code").value.trim();
    if (invitation) return { invitation_code: invitation };
    return { entry_code: $("entry-code").value.trim(), student_id: $("student-id").value.trim() };
  }

  async function begin(answer) {
    joined = answer;
    sessionStorage.setItem(KEY, JSON.stringify(answer));
    const stored = await highestStoredSeq();
    nextSeq = Math.max(answer.next_seq, stored + 1);
    counts.recorded = nextSeq;
    await refreshCounts();
    show(["share", "taking"]);
    state("idle");
    drawTimeLeft();
    connection(text.connected);
    heartbeat();
    clearInterval(heartbeatTimer);
    heartbeatTimer = setInterval(heartbeat, answer.heartbeat_interval_s * 1000);
    pump();
  }

  // After a reload: the same session and token, if the server still takes them.
  async function resume(saved) {
    joined = saved;
    let response;
    try {
      response = await call("GET", sessionPath());
    } catch (err) {
      await begin(saved); // offline: go on with what this tab knows; uploads will retry
      return;
    }
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      takenOver();
      return;
    }
    const view = response.ok ? await response.json() : null;
    if (view && !["active", "closing"].includes(view.state) && !(await waitingSeqs()).length) {
      done();
      return;
    }
    const now = view ? { next_seq: view.next_seq, ends_at: view.exam_ends_at } : { next_seq: saved.next_seq };
    await begin(Object.assign({}, saved, now));
  }

  function takenOver() {
    stopRecording();
    clearInterval(heartbeatTimer);
    sessionStorage.removeItem(KEY);
    joined = null;
    problem(text.taken_over);
    show(["join"]);
    state("idle");
  }

  // --- heartbeats -------------------------------------------------------------------------------

  async function heartbeat() {
    if (!joined) return;
    try {
      const response = await call("POST", sessionPath() + "/heartbeat");
      if (response.status === 401 || response.status === 403) return takenOver();
      if (!response.ok) return connection(response.status >= 500 ? text.unreachable : text.refused + " " + response.status);
      const answer = await response.json();
      clockSkewMs = Date.parse(answer.server_time) - Date.now();
      connection(text.connected);
      if (performance.now() - endCheckedAt > END_CHECK_MS) refreshEnd();
      if (!answer.tracked && !ending) endExam(); // the session was finished (the exam is over)
    } catch (err) {
      connection(text.unreachable);
    }
  }

  // --- recording ---------------------------------------------------------------------------------

  async function share() {
    problem("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia || !MIME) {
      problem(text.unsupported);
      return;
    }
    $("share-button").disabled = true; // one request to share at a time
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { displaySurface: "monitor" }, audio: false });
    } catch (err) {
      problem(text.share_refused);
      return;
    } finally {
      $("share-button").disabled = false;
    }
    const track = stream.getVideoTracks()[0];
    track.addEventListener("ended", sharingStopped);
    $("preview").srcObject = stream;
    $("preview").hidden = false;
    $("share-stopped").hidden = true;
    show(["taking"]);
    // Recording starts with the screen's first frame: before it, there is nothing to record.
    startRecorder(await firstFrame());
    state("recording");
  }

  // The time of the screen's first frame (or of giving up waiting for it).
  function firstFrame() {
    const preview = $("preview");
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(performance.now()), 3000);
      preview.addEventListener("playing", () => {
        clearTimeout(timer);
        resolve(performance.now());
      }, { once: true });
    });
  }

  // One recorder while the screen is shared: its time slices are one byte stream, the first
  // carrying the WebM header; a segment is the slices of `segment_s` seconds.
  function startRecorder(from) {
    const sid = joined.session_id;
    const recorder = new MediaRecorder(stream, { mimeType: MIME });
    current = { recorder, from };
    openSegment();
    recorder.ondataavailable = (event) => {
      if (!event.data.size) return;
      const seq = segment.seq;
      const part = segment.parts++;
      const capturedAt = segment.capturedAt;
      writes = writes.then(() => savePiece(sid, seq, part, event.data, capturedAt));
    };
    recorder.onstop = () => {
      recordedMs += Math.max(0, (current && current.recorder === recorder ? performance.now() : stoppedAt) - from);
      cutSegment(true);
    };
    recorder.start(SLICE_MS);
    segmentTimer = setInterval(() => cutSegment(false), joined.segment_s * 1000);
  }

  function openSegment() {
    segment = { seq: nextSeq++, parts: 0, capturedAt: Date.now() };
    open.add(segment.seq);
    counts.recorded = Math.max(counts.recorded, segment.seq);
  }

  // The slices so far make a segment; those after it, the next one. A segment that got no slice
  // yet goes on (or, at the end, gives its seq back: a seq skipped would be a gap the merge waits
  // for).
  function cutSegment(last) {
    const closing = segment;
    if (!closing.parts && !last) return;
    if (!last) openSegment();
    writes = writes.then(() => closeSegment(closing), (err) => problem(String(err)));
  }

  async function closeSegment(closed) {
    open.delete(closed.seq);
    if (!closed.parts) {
      if (nextSeq === closed.seq + 1) nextSeq = closed.seq;
      counts.recorded = Math.min(counts.recorded, nextSeq);
    } else {
      counts.recorded = Math.max(counts.recorded, closed.seq + 1);
    }
    await refreshCounts();
    pump();
  }

  function stopRecording() {
    clearInterval(segmentTimer);
    if (current) {
      stoppedAt = performance.now();
      const recorder = current.recorder;
      current = null;
      if (recorder.state !== "inactive") recorder.stop(); // its last slice, then onstop
    }
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    $("preview").hidden = true;
    state("idle");
  }

  // The browser's own "stop sharing": say so at once, report it, ask to share again.
  function sharingStopped() {
    if (ending || !current) return;
    stopRecording();
    $("share-stopped").hidden = false;
    show(["share", "taking"]);
    reportViolation(Date.now());
  }

  async function reportViolation(at, attempt = 0) {
    if (!joined) return;
    try {
      const response = await call("POST", sessionPath() + "/violations", { reason: STOPPED_SHARING, occurred_at: at });
      if (response.ok || (response.status < 500 && response.status !== 429)) return;
    } catch (err) {
      // offline: tried again below
    }
    setTimeout(() => reportViolation(at, attempt + 1), Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt));
  }

  // --- sending -------------------------------------------------------------------------------------

  async function refreshCounts() {
    if (!joined) return;
    counts.waiting = (await waitingSeqs()).length;
    const recording = [...open].filter((seq) => seq < counts.recorded).length;
    counts.sent = Math.max(0, counts.recorded - counts.waiting - recording);
    drawCounts();
  }

  // Sends the waiting segments, oldest first, one at a time; on a failure, waits and starts again.
  async function pump() {
    if (pumping) {
      pumpAgain = true; // a segment closed while this one was looking: look again
      return;
    }
    if (!joined) return;
    pumping = true;
    clearTimeout(pumpTimer);
    let delay = null;
    try {
      do {
        pumpAgain = false;
        for (let seqs = await waitingSeqs(); joined && seqs.length && delay === null; seqs = joined ? await waitingSeqs() : []) {
          delay = await send(seqs[0]);
          await refreshCounts();
        }
      } while (pumpAgain && joined && delay === null);
    } catch (err) {
      delay = backoffMs();
      connection(String(err));
    } finally {
      pumping = false;
    }
    if (delay !== null) {
      if (joined) connection(fill(text.retrying, delay / 1000));
      pumpTimer = setTimeout(pump, delay);
    } else if (ending && !open.size) {
      finish();
    }
  }

  // null when the segment is done with; else how long to wait before trying again.
  async function send(seq) {
    const sid = joined.session_id;
    const pieces = await request(store("readonly").getAll(range(sid, seq)));
    const bytes = await new Blob(pieces.map((p) => p.blob), { type: "video/webm" }).arrayBuffer();
    if (!bytes.byteLength) {
      await forget(seq);
      return null;
    }
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const headers = {
      "Content-Type": "video/webm",
      "X-Content-SHA256": Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      "X-Captured-At": String(pieces[0].capturedAt),
    };
    let response;
    try {
      response = await call("PUT", sessionPath() + "/segments/" + seq, bytes, headers);
    } catch (err) {
      connection(text.unreachable);
      return backoffMs();
    }
    if (response.status === 200 || response.status === 201) {
      failures = 0;
      connection(text.connected);
      await forget(seq);
      return null;
    }
    if (response.status === 401 || response.status === 403) {
      takenOver();
      return null;
    }
    if (response.status === 429 || response.status >= 500) {
      connection(text.unreachable);
      return retryAfterMs(response) || backoffMs();
    }
    // The server will never take these bytes under this seq: keeping them would stop every later one.
    problem(text.refused + " " + (await errorCode(response)) + " (" + seq + ")");
    await forget(seq);
    return null;
  }

  // --- ending ------------------------------------------------------------------------------------

  async function endExam() {
    ending = true;
    $("end-button").hidden = true;
    $("end-confirm").hidden = true;
    $("share-stopped").hidden = true;
    stopRecording();
    show(["taking"]);
    connection(text.ending);
    pump(); // finishes once the last segment is acknowledged
  }

  async function finish() {
    if (open.size || (await waitingSeqs()).length) return pump(); // never before the last segment
    let response;
    try {
      response = await call("POST", sessionPath() + "/finish", {});
    } catch (err) {
      pumpTimer = setTimeout(pump, backoffMs());
      return;
    }
    if (response.status === 202 || response.status === 409) return done();
    if (response.status === 401 || response.status === 403) return takenOver();
    pumpTimer = setTimeout(pump, retryAfterMs(response) || backoffMs());
  }

  function done() {
    clearInterval(heartbeatTimer);
    sessionStorage.removeItem(KEY);
    root.dataset.state = "done";
    show(["done"]);
  }

  // --- start ---------------------------------------------------------------------------------------

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    join(proofFromForm());
  });
  $("share-button").addEventListener("click", share);
  $("end-button").addEventListener("click", () => {
    $("end-confirm").hidden = false;
  });
  $("end-confirm").addEventListener("click", endExam);
  window.addEventListener("online", pump);
  setInterval(() => {
    drawTimeLeft();
    drawCounts();
  }, 1000);

  openDb().then(
    (opened) => {
      db = opened;
      const saved = sessionStorage.getItem(KEY);
      if (saved) {
        resume(JSON.parse(saved));
      } else {
        show(["join"]);
        state("idle");
      }
    },
    () => problem(text.unsupported),
  );
})();
