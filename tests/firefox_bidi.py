"""Debian's Firefox ESR driven over WebDriver BiDi, the protocol it speaks itself: Debian has no
geckodriver package and the tests download nothing, so there is no Selenium for Firefox here.

Firefox runs headless, but on a display of its own (Xvfb): headless Firefox has no fake screen for
``getDisplayMedia`` (``media.navigator.streams.fake`` fakes cameras and microphones only), while on
an X display it shares that display's "Primary Monitor", without asking
(``media.navigator.permission.disabled``). Clicks are BiDi pointer actions, real user gestures:
``getDisplayMedia`` needs one.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

FIREFOX, XVFB = Path("/usr/bin/firefox-esr"), Path("/usr/bin/Xvfb")

PREFS = {
    "media.navigator.permission.disabled": True,  # share the (only) screen without the picker
    "intl.accept_languages": "en-US,en",
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "app.update.disabledForTesting": True,
}


class BidiError(RuntimeError):
    """A command Firefox answered with an error."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_xvfb(log: Path) -> tuple[subprocess.Popen, str]:
    """An X display of 1280x800 on a number Xvfb picks itself (it writes it on -displayfd)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([str(XVFB), "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    os.close(write_end)
    with os.fdopen(read_end) as told:
        number = told.readline().strip()
    if not number:
        proc.kill()
        raise RuntimeError(f"Xvfb told no display number (see {log})")
    return proc, f":{number}"


class Firefox:
    """One headless Firefox with a fresh profile in ``workdir``, its BiDi session and its first tab."""

    def __init__(self, workdir: Path):
        import websocket  # websocket-client

        profile = workdir / "firefox-profile"
        profile.mkdir(parents=True)
        (profile / "user.js").write_text("".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items()))
        self.xvfb, display = start_xvfb(workdir / "xvfb.log")
        port = free_port()
        self.proc = subprocess.Popen(
            [str(FIREFOX), "--headless", "--no-remote", "--remote-debugging-port", str(port), "--profile", str(profile),
             "about:blank"],
            env={**os.environ, "DISPLAY": display, "MOZ_CRASHREPORTER_DISABLE": "1"},
            stdout=(workdir / "firefox.log").open("wb"), stderr=subprocess.STDOUT)
        self._next_id = 0
        self.socket = self._connect(websocket, port)
        self.call("session.new", capabilities={})
        self.context = self.call("browsingContext.getTree")["contexts"][0]["context"]

    def _connect(self, websocket, port: int):
        deadline = time.monotonic() + 60
        while True:
            try:
                # Firefox refuses a handshake that carries an Origin header.
                return websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=60,
                                                   suppress_origin=True)
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.quit()
                    raise
                time.sleep(0.2)

    def call(self, method: str, **params) -> dict:
        """Sends a command and returns its result (events that come before the answer are dropped)."""
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == self._next_id:
                if answer.get("type") == "error":
                    raise BidiError(f"{method}: {answer.get('error')}: {answer.get('message')}")
                return answer["result"]

    def open(self, url: str) -> None:
        self.call("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def run(self, body: str, *args: str | int):
        """The value (a string, number, boolean or null) of the (async) function ``body`` applied to ``args``."""
        done = self.call("script.callFunction", functionDeclaration=f"async function () {{ {body} }}", awaitPromise=True,
                         arguments=[{"type": "string" if isinstance(a, str) else "number", "value": a} for a in args],
                         target={"context": self.context})
        if done["type"] == "exception":
            raise BidiError(done["exceptionDetails"]["text"])
        return done["result"].get("value")

    def displayed(self, element_id: str) -> bool:
        return bool(self.run("const e = document.getElementById(arguments[0]); return !!e && e.checkVisibility()",
                             element_id))

    def attribute(self, element_id: str, name: str) -> str | None:
        return self.run("return document.getElementById(arguments[0]).getAttribute(arguments[1])", element_id, name)

    def click(self, element_id: str) -> None:
        """A mouse click in the middle of the element, as a person's (a user gesture)."""
        x, y = json.loads(self.run(
            "const e = document.getElementById(arguments[0]); e.scrollIntoView({block: 'center'});"
            "const r = e.getBoundingClientRect(); return JSON.stringify([r.x + r.width / 2, r.y + r.height / 2])",
            element_id))
        self.call("input.performActions", context=self.context, actions=[{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": round(x), "y": round(y)},
                        {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}])
        self.call("input.releaseActions", context=self.context)

    def type(self, element_id: str, text: str) -> None:
        """Keys typed into the element, which gets the focus first."""
        self.run("document.getElementById(arguments[0]).focus()", element_id)
        keys = [action for char in text for action in ({"type": "keyDown", "value": char}, {"type": "keyUp", "value": char})]
        self.call("input.performActions", context=self.context,
                  actions=[{"type": "key", "id": "keyboard", "actions": keys}])

    def quit(self) -> None:
        try:
            if getattr(self, "socket", None):
                self.call("browser.close")
        except Exception:  # noqa: BLE001 - it is going away anyway: stopped below
            pass
        for proc in (self.proc, self.xvfb):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
