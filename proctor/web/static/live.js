// The live exam view: polls the console's JSON of the exam every few seconds and redraws the
// table of students, filtered in the page. Every string shown comes from the page (#labels), so
// this file has none to translate.
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
  let latest = null;

  for (const el of root.querySelectorAll("[data-label]")) {
    el.textContent = labels.presence[el.dataset.label];
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString(labels.lang, { hour12: false }) : "—";
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    if (className) td.className = className;
    return td;
  }

  function mergeCell(student) {
    const td = cell(student.merge ? labels.merge[student.merge] || student.merge : null);
    if (student.merge === "merging" && student.merge_progress !== null) {
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = student.merge_progress;
      td.append(" ", bar);
    }
    return td;
  }

  function row(student) {
    const tr = document.createElement("tr");
    tr.dataset.student = student.student_id;
    tr.dataset.presence = student.presence;
    tr.className = "presence-" + student.presence;
    const name = cell(student.name);
    if (!student.on_roster) name.append(" (" + labels.not_on_roster + ")");
    tr.append(
      cell(student.student_id, "code"),
      name,
      cell(labels.presence[student.presence], "presence"),
      cell(clock(student.last_seen)),
      cell(student.client_addr, "code"),
      cell(student.segments, "n"),
      cell(student.missing, "n"),
      mergeCell(student),
      cell(student.violations, student.violations ? "n flagged" : "n"),
    );
    return tr;
  }

  function shown(student) {
    if (offlineOnly.checked && student.presence !== "offline") return false;
    if (withViolations.checked && !student.violations) return false;
    return true;
  }

  function render() {
    if (!latest) return;
    const rows = document.createDocumentFragment();
    for (const student of latest.students) {
      if (shown(student)) rows.append(row(student));
    }
    body.replaceChildren(rows);
    empty.hidden = body.children.length > 0;
    for (const [presence, n] of Object.entries(latest.counts)) {
      const count = document.getElementById("count-" + presence);
      if (count) count.textContent = n;
    }
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
