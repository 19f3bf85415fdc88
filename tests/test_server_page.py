"""The page of `runner serve` (`/`) in headless Chromium, against a real server: submit the demo through the form (an
invalid override first: its problems shown under the form), watch its progress bar move, see its image in the
gallery and open its report, pause the queue, submit again and cancel the queued job. Screenshots go to
outputs/test-artifacts/.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: NUL-separated JSON on file
descriptors 3 and 4), with the standard library only: no browser-automation package, no websocket client."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_report import ARTIFACTS, CHROMIUM, needs_chromium


class DevTools:
    """One headless Chromium and one page of it, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path, log: Path):
        to_browser, self._commands = os.pipe()  # Chromium reads its commands on fd 3
        self._answers, from_browser = os.pipe()  # and writes its answers and events on fd 4
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-',
             CHROMIUM, *flags], pass_fds=(to_browser, from_browser), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT)
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._ready = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._answers, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                with self._ready:
                    for raw in messages:
                        message = json.loads(raw)
                        if "id" in message:
                            self._replies[message["id"]] = message
                        else:
                            self.events.append(message)
                    self._ready.notify_all()

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        self._next += 1
        number = self._next
        message = {"id": number, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._ready:
            if not self._ready.wait_for(lambda: number in self._replies, timeout):
                raise TimeoutError(f"Chromium did not answer {method} in {timeout} s")
            reply = self._replies.pop(number)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def send(self, method: str, **params) -> dict:
        """A command to the page."""
        return self.call(method, self.session, **params)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30, what: str = ""):
        """The expression's value once it is truthy (evaluated every 50 ms), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what or expression}; the page shows: "
                                   f"{self.js('document.body.innerText')[:2000]}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        assert self.js(f"(() => {{ const b = document.querySelector({json.dumps(selector)}); if (!b || b.hidden) "
                       f"return false; b.click(); return true; }})()"), f"nothing to click: {selector}"

    def set_files(self, selector: str, files: list[Path]) -> None:
        node = self.send("Runtime.evaluate", expression=f"document.querySelector({json.dumps(selector)})")
        self.send("DOM.setFileInputFiles", files=[str(path) for path in files], objectId=node["result"]["objectId"])

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def console_errors(self, expected: str | None = None) -> list[str]:
        """Errors the page logged, thrown or caused (CSP violations, failed loads), but those matching `expected`."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry'].get('source')}: {params['entry']['text']} {params['entry'].get('url', '')}")
        return [error for error in errors if not (expected and re.search(expected, error))]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        self._log.close()


@pytest.fixture
def server(tmp_path):
    """`runner serve --out tmp/out` in this process, on a free loopback port: (its URL, its Service)."""
    import uvicorn

    from runner.server.app import create_app
    from runner.server.service import ServerOptions, Service

    service = Service(ServerOptions(out=tmp_path / "out"))
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=3)
    http = uvicorn.Server(config)
    service.start()
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not http.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = http.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        http.should_exit = True
        thread.join(10)
        service.stop()


@pytest.fixture
def browser(tmp_path):
    chromium = DevTools(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        yield chromium
    finally:
        chromium.close()


def queue_row(job: str) -> str:
    return f"document.querySelector('#queue tr[data-job=\"{job}\"]')"


def card(job: str) -> str:
    return f"document.querySelector('#gallery [data-job=\"{job}\"]')"


@needs_chromium
def test_the_page_submits_shows_progress_and_the_gallery_and_cancels(server, browser, demo, tmp_path):
    url, service = server
    page = browser
    page.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    page.send("Page.navigate", url=url + "/")
    page.wait("document.body && document.body.dataset.ready === 'true'", what="the page's first answer from the server")
    assert page.js("document.getElementById('who').textContent") == "signed in as local (admin)"
    assert page.js("!document.getElementById('pause').hidden && document.getElementById('resume').hidden")
    assert page.js("document.getElementById('token-section').hidden")

    # an invalid override: refused (422), its problems under the form, nothing queued
    page.set_files("#workflow", [demo])
    page.set_files("#inputs", [demo.parent / "inputs" / "room.png"])
    page.js("document.getElementById('sets').value = 'nodes.nowhere.steps=3'")
    page.click("#submit-button")
    problems = page.wait("!document.getElementById('problems').hidden && document.getElementById('problems').innerText",
                         what="the problems of the invalid override")
    assert "invalid" in problems and "nowhere" in problems and "fix:" in problems, problems
    assert page.js("document.getElementById('problems').getAttribute('role')") == "alert"
    page.screenshot(ARTIFACTS / "serve-page-problems.png")
    assert service.store.jobs() == []

    # the demo: queued, running with a progress bar that moves, then in the gallery with its image and report
    page.js("document.getElementById('sets').value = 'params.steps=2\\nparams.prompt=a cosy test room'")
    page.click("#submit-button")
    job = page.wait("document.getElementById('submit-status').dataset.job", what="the submission")
    assert page.js("document.getElementById('problems').hidden")
    assert service.store.get(job).request["set"] == ["params.steps=2", "params.prompt=a cosy test room"]
    seen, shot = set(), False
    deadline = time.monotonic() + 60
    while not page.js(f"!!{card(job)}"):
        state = page.js(f"(() => {{ const r = {queue_row(job)}; if (!r) return null; const bar = r.querySelector("
                        f"'progress'); return [r.dataset.state, bar.dataset.value, bar.max, bar.getAttribute('aria-label')]; }})()")
        if state and state[0] == "running" and state[1]:
            seen.add(float(state[1]))
            assert 0 <= float(state[1]) <= state[2] == 7 and state[3].startswith("progress of demo: "), state
            value = float(state[1])
            if 0 < value < 7 and (not shot or value % 1 and shot != "mid-node"):  # preferably one mid-node (steps)
                page.screenshot(ARTIFACTS / "serve-page-running.png")
                shot = "mid-node" if value % 1 else "between nodes"
        assert time.monotonic() < deadline, f"the demo did not finish; progress seen: {sorted(seen)}"
        time.sleep(0.05)
    assert len([value for value in seen if 0 < value < 7]) >= 2, f"the bar did not move: {sorted(seen)}"
    assert any(event["params"]["request"]["url"].endswith(f"/v1/jobs/{job}/events") for event in page.events
               if event.get("method") == "Network.requestWillBeSent"), "the page did not follow the job's events"
    assert page.js(f"{card(job)}.dataset.state") == "ok"
    assert page.js(f"!{queue_row(job)}") and page.js("!document.getElementById('queue-empty').hidden")
    images = page.wait(f"(() => {{ const images = [...{card(job)}.querySelectorAll('img')]; return images.length && "
                       f"images.every(img => img.complete && img.naturalWidth === 64 && img.src.startsWith('blob:')) "
                       f"&& images.map(img => img.dataset.file); }})()", what="the demo's images in the gallery")
    assert set(images) == {"final.png", "txt2img.png"}
    page.screenshot(ARTIFACTS / "serve-page-gallery.png")
    page.click(f"#gallery [data-job=\"{job}\"] button[data-report]")
    page.wait("document.getElementById('viewer').open && document.getElementById('viewer-frame').dataset.loaded === "
              "'true'", what="the report in the viewer")
    assert page.js("document.getElementById('viewer-frame').src").startswith("blob:")
    assert page.js("document.getElementById('viewer-frame').getAttribute('sandbox')") == "allow-scripts"
    page.screenshot(ARTIFACTS / "serve-page-report.png")
    page.click("#viewer [data-close]")
    page.wait("!document.getElementById('viewer').open")

    # paused: the next job waits at position 1; cancelled from its row, it moves to the gallery as cancelled
    page.click("#pause")
    page.wait("document.body.dataset.paused === 'true' && !document.getElementById('resume').hidden", what="pause")
    assert not page.js("document.getElementById('paused').hidden")
    page.click("#submit-button")
    second = page.wait(f"(() => {{ const job = document.getElementById('submit-status').dataset.job; "
                       f"return job !== {json.dumps(job)} && job; }})()", what="the second submission")
    page.wait(f"{queue_row(second)} && {queue_row(second)}.dataset.state === 'queued'", what="the queued row")
    assert page.js(f"{queue_row(second)}.cells[0].textContent") == "1"
    assert "waiting: position 1" in page.js(f"{queue_row(second)}.innerText")
    page.screenshot(ARTIFACTS / "serve-page-queued.png")
    page.click(f"#queue tr[data-job=\"{second}\"] button.danger")
    page.wait(f"!{queue_row(second)} && {card(second)} && {card(second)}.dataset.state === 'cancelled'",
              what="the cancelled job in the gallery")
    assert service.store.get(second).state == "cancelled"
    assert page.js(f"[...document.querySelectorAll('#gallery > li')].map(li => li.dataset.job)") == [second, job]
    page.click("#resume")
    page.wait("document.body.dataset.paused === 'false' && !document.getElementById('pause').hidden", what="resume")
    page.screenshot(ARTIFACTS / "serve-page-desktop.png")

    # the server gets a token: the page's next call answers 401, the page asks for the token and forgets what it
    # showed; given one, it sends it as a header on every call, images included, and never in a URL
    token = service.store.add_token("alice", True)
    page.wait("!document.getElementById('token-section').hidden && !document.getElementById('gallery').children.length"
              " && document.getElementById('jobs-area').hidden && document.getElementById('pause').hidden",
              what="the token form instead of the jobs")
    assert page.js("document.getElementById('token').type") == "password"
    assert "sessionStorage" in page.js("document.getElementById('token-hint').textContent")
    page.screenshot(ARTIFACTS / "serve-page-token.png")
    asked = len(page.events)
    page.js(f"document.getElementById('token').value = {json.dumps(token)}")
    page.click("#token-form button[type=submit]")
    page.wait("document.getElementById('who').textContent === 'signed in as alice (admin)'", what="alice signed in")
    page.wait(f"(() => {{ const c = {card(job)}; const images = c ? [...c.querySelectorAll('img')] : []; "
              f"return images.length === 2 && images.every(img => img.complete && img.naturalWidth === 64); }})()",
              what="the images fetched again with the token")
    assert page.js("sessionStorage.getItem('runner-serve-token')") == token
    requests = [event["params"]["request"] for event in page.events[asked:]
                if event.get("method") == "Network.requestWillBeSent" and "/v1/" in event["params"]["request"]["url"]]
    assert any("/files/final.png" in request["url"] for request in requests)
    for request in requests:
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert headers.get("authorization") == f"Bearer {token}", request["url"]
    assert not any(token in event["params"]["request"]["url"] for event in page.events
                   if event.get("method") == "Network.requestWillBeSent")
    page.send("Emulation.setDeviceMetricsOverride", width=390, height=900, deviceScaleFactor=1, mobile=True)
    assert page.js("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways"
    page.screenshot(ARTIFACTS / "serve-page-phone.png")
    # the errors expected: the browser's notes of the invalid submission's 422 and of the calls refused for a token
    errors = page.console_errors(expected=r"status of (422|401)")
    assert not errors, errors
