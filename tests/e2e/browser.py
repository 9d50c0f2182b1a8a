"""One headless Chromium driven over the DevTools protocol (CDP, through `websockets`), for the
browser tests (dashboard_e2e.py, console_e2e.py): its own profile, one page, real mouse events,
screenshots. Debian's chromium, headless, no sandbox, no background networking.
"""

import asyncio
import base64
import json
import subprocess
import time
import urllib.request

import websockets

# A guard against a hang only (a page that never shows what is awaited), never a speed bound.
HANG_GUARD_S = 90


class Browser:
    """One headless Chromium with its own profile, one page, driven over CDP."""

    def __init__(self, chromium, profile, log):
        profile.mkdir(parents=True)
        self.process = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--disable-default-apps", "--remote-debugging-port=0",
             # Never throttle the page as a background one: a throttled page draws no frame, and
             # a screenshot waits for one (Puppeteer starts Chromium with the same flags).
             "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
             "--disable-background-timer-throttling", "--disable-hang-monitor",
             "--disable-ipc-flooding-protection",
             "--window-size=1280,900", f"--user-data-dir={profile}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        end = time.time() + HANG_GUARD_S
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > end or self.process.poll() is not None:
                raise SystemExit("chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.loop = asyncio.new_event_loop()
        self.ws = self.loop.run_until_complete(websockets.connect(page["webSocketDebuggerUrl"], max_size=None))
        self.next_id = 0
        self.call("Page.enable")
        self.call("Network.enable")

    def call(self, method, _guard=HANG_GUARD_S, **params):
        self.next_id += 1
        ident = self.next_id

        async def exchange():
            await self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        return self.loop.run_until_complete(asyncio.wait_for(exchange(), _guard))

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def wait_for(self, expression, what):
        """Polls `expression` (a value, not a DOM node: `!!node`) until it is truthy; returns its
        value, or None past the guard."""
        end = time.time() + HANG_GUARD_S
        while time.time() < end:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.25)
        print(f"     (never: {what}; at {self.eval('location.href')}: {self.text()[:300]!r})")
        return None

    def click(self, expression):
        """A real mouse click (pressed, released) at the middle of the element `expression`
        finds, once it is drawn."""
        middle = self.wait_for(
            "(() => { const e = " + expression + "; if (!e) return null; const r = e.getBoundingClientRect(); "
            "return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()",
            "something to click")
        if not middle:
            return
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=middle[0], y=middle[1], button="left", clickCount=1)

    def type_into(self, expression, text):
        """Clicks the element `expression` finds and types `text` into it."""
        self.click(expression)
        self.call("Input.insertText", text=text)

    def text_of(self, element_id, what):
        """The text of the element with this id once it has some (None past the guard)."""
        return self.wait_for(f"(e => e && e.innerText)(document.getElementById({json.dumps(element_id)}))", what)

    def text(self):
        return self.eval("document.body ? document.body.innerText.replace(/\\s+/g, ' ') : ''") or ""

    def screenshot(self, path):
        """The page as drawn, to `path`. A capture asked while the page is between two documents
        can wait for a frame that never comes (headless Chromium); it is asked again once the
        page has loaded."""
        for _ in range(3):
            try:
                data = self.call("Page.captureScreenshot", _guard=HANG_GUARD_S / 3, format="png")["data"]
            except TimeoutError:
                self.wait_for("document.readyState === 'complete'", "a loaded page")
                continue
            path.write_bytes(base64.b64decode(data))
            return
        raise SystemExit(f"no screenshot for {path.name}")

    def close(self):
        try:
            self.loop.run_until_complete(self.ws.close())
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
