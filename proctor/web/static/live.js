// The live exam view: polls the console's JSON of the exam every few seconds and brings the table
// of students up to date, filtered in the page. Each student's row is made once and then changed
// in place, only where a value changed, so a poll of a hall of 500 touches only what moved. A
// student whose violation count grew since the last poll is named in a notice until dismissed.
// Every string shown comes from the page (#labels), so this file has none to translate.
"use strict";

(function () {
  const root = document.getElementById("live");
  if (!root) return;
  const url = root.dataset.url;
  const pollMs = Number(root.dataset.pollMs) || 3000;
  const labels = JSON.parse(document.getElementById("labels").textContent);
  const body = document.getElementById("students");
  const offlineOnly = document.getElementById("offline-only");
  const withViolations = document.getElementById("with-violations");
  const updated = document.getElementById("updated");
  const stale = document.getElementById("stale");
  const empty = document.getElementById("empty");
  const notices = document.getElementById("notices");
  const rows = new Map(); // student id -> {tr, cells, shown}: the rows made so far
  let latest = null;
  let violationsSeen = null; // student id -> violation count at the last poll (null before the first)

  for (const el of root.querySelectorAll("[data-label]")) {
    el.textContent = labels.presence[el.dataset.label];
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString(labels.lang, { hour12: false }) : "—";
  }

  function shownText(value) {
    return value === null || value === undefined ? "—" : String(value);
  }

  function cell(className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    return td;
  }

  function setText(node, value) {
    const text = shownText(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function setClass(node, className) {
    if (node.className !== className) node.className = className;
  }

  function studentLink(student) {
    // Its detail page (presence timeline, logins, violations, recording).
    const link = document.createElement("a");
    link.href = root.dataset.students + encodeURIComponent(student.student_id);
    link.textContent = student.student_id;
    return link;
  }

  function newRow(student) {
    const tr = document.createElement("tr");
    tr.dataset.student = student.student_id;
    const cells = {
      id: cell("code"), name: cell(), presence: cell("presence"), lastSeen: cell(), address: cell("code"),
      segments: cell("n"), missing: cell("n"), merge: cell(), violations: cell("n"),
    };
    cells.id.append(studentLink(student));
    tr.append(cells.id, cells.name, cells.presence, cells.lastSeen, cells.address, cells.segments, cells.missing,
              cells.merge, cells.violations);
    return { tr, cells, shown: "" };
  }

  function mergeShown(student) {
    return [student.merge, student.merge === "merging" ? student.merge_progress : null];
  }

  function setMerge(td, student) {
    const [merge, progress] = mergeShown(student);
    td.textContent = shownText(merge ? labels.merge[merge] || merge : null);
    if (progress !== null && progress !== undefined) {
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = progress;
      td.append(" ", bar);
    }
  }

  function update(entry, student) {
    // What the row shows: when none of it changed, the row is left alone.
    const shown = JSON.stringify([student.name, student.on_roster, student.presence, student.last_seen,
                                  student.client_addr, student.segments, student.missing, mergeShown(student),
                                  student.violations]);
    if (shown === entry.shown) return false;
    const { tr, cells } = entry;
    if (tr.dataset.presence !== student.presence) tr.dataset.presence = student.presence;
    setClass(tr, "presence-" + student.presence);
    setText(cells.name, student.on_roster ? student.name : shownText(student.name) + " (" + labels.not_on_roster + ")");
    setText(cells.presence, labels.presence[student.presence]);
    setText(cells.lastSeen, clock(student.last_seen));
    setText(cells.address, student.client_addr);
    setText(cells.segments, student.segments);
    setText(cells.missing, student.missing);
    if (JSON.stringify(mergeShown(student)) !== JSON.stringify(entry.merge)) {
      setMerge(cells.merge, student);
      entry.merge = mergeShown(student);
    }
    setText(cells.violations, student.violations);
    setClass(cells.violations, student.violations ? "n flagged" : "n");
    entry.shown = shown;
    return true;
  }

  function passes(student) {
    if (offlineOnly.checked && student.presence !== "offline") return false;
    if (withViolations.checked && !student.violations) return false;
    return true;
  }

  function render() {
    if (!latest) return;
    const started = performance.now();
    const present = new Set();
    let changed = 0;
    // The rows that pass the filters, in order: one already in its place stays untouched, one
    // out of place is moved (not made again), and the rows after the last one are taken out.
    let next = body.firstElementChild;
    for (const student of latest.students) {
      present.add(student.student_id);
      let entry = rows.get(student.student_id);
      if (!entry) {
        entry = newRow(student);
        rows.set(student.student_id, entry);
      }
      if (update(entry, student)) changed += 1;
      if (!passes(student)) continue;
      if (entry.tr === next) {
        next = next.nextElementSibling;
      } else {
        body.insertBefore(entry.tr, next);
      }
    }
    while (next) {
      const after = next.nextElementSibling;
      next.remove();
      next = after;
    }
    for (const id of rows.keys()) {
      if (!present.has(id)) rows.delete(id); // taken off the roster
    }
    empty.hidden = body.firstElementChild !== null;
    for (const [presence, n] of Object.entries(latest.counts)) {
      const count = document.getElementById("count-" + presence);
      if (count) setText(count, n);
    }
    // Read by the browser test and the benchmark: the script's time of the last update, and how
    // many rows it changed.
    root.dataset.renderMs = (performance.now() - started).toFixed(2);
    root.dataset.changedRows = String(changed);
  }

  function noticeNewViolations(students) {
    const counts = new Map(students.map((s) => [s.student_id, s.violations || 0]));
    if (violationsSeen !== null) {
      for (const student of students) {
        if ((counts.get(student.student_id) || 0) > (violationsSeen.get(student.student_id) || 0)) {
          notify(student);
        }
      }
    }
    violationsSeen = counts;
  }

  function notify(student) {
    // One notice per student: a later violation of the same student moves theirs to the top.
    let notice = Array.from(notices.children).find((n) => n.dataset.student === student.student_id);
    if (!notice) {
      notice = document.createElement("div");
      notice.className = "notice";
      notice.dataset.student = student.student_id;
      const text = document.createElement("span");
      const dismiss = document.createElement("button");
      dismiss.type = "button";
      dismiss.className = "secondary dismiss";
      dismiss.textContent = labels.dismiss;
      dismiss.addEventListener("click", () => notice.remove());
      notice.append(text, " ", dismiss);
    }
    const who = student.name ? student.name + " (" + student.student_id + ")" : student.student_id;
    const [before, after] = labels.new_violation.split("{0}");
    const link = studentLink(student);
    link.textContent = who;
    notice.firstElementChild.replaceChildren(before, link, after || "");
    notice.dataset.violations = String(student.violations);
    notices.prepend(notice);
  }

  async function refresh() {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        window.location.assign(root.dataset.signIn);
        return;
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      latest = await answer.json();
      render();
      noticeNewViolations(latest.students);
      updated.textContent = labels.updated + " " + clock(new Date().toISOString());
      stale.hidden = true;
      root.dataset.refreshed = String(Number(root.dataset.refreshed || 0) + 1);
    } catch (err) {
      stale.hidden = false;
    }
    window.setTimeout(refresh, pollMs);
  }

  offlineOnly.addEventListener("change", render);
  withViolations.addEventListener("change", render);
  refresh();
})();
