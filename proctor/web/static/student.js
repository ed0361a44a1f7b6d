// The student detail page: while the recording is being merged, polls its state every few
// seconds, moves the progress bar, and reloads the page once the state changes (the player and
// the merge report are drawn by the server). The file has no string to translate.
"use strict";

(function () {
  const root = document.getElementById("recording");
  if (!root || !root.dataset.follow) return;
  const pollMs = Number(root.dataset.pollMs) || 3000;
  const bar = document.getElementById("merge-progress");

  async function refresh() {
    try {
      const answer = await fetch(root.dataset.stateUrl, { headers: { Accept: "application/json" },
                                                          credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        window.location.reload();  // signed out: the page itself leads to sign-in
        return;
      }
      if (answer.ok) {
        const recording = await answer.json();
        if (!recording || recording.status !== root.dataset.status) {
          window.location.reload();
          return;
        }
        if (bar && recording.progress !== null) bar.value = recording.progress;
      }
    } catch (err) {
      // The server did not answer: try again at the next tick.
    }
    window.setTimeout(refresh, pollMs);
  }

  window.setTimeout(refresh, pollMs);
})();
