#!/usr/bin/env python
"""Screenshot of the labeling view a pcoreset run prepared in Label Studio
(docs/guide/label_studio.png), taken with headless Chromium.

Logs in through the browser's login form (LABEL_STUDIO_USERNAME,
LABEL_STUDIO_PASSWORD), opens the round's tab ("pcoreset round K: ...") of
the project in labeling mode and saves the page as PNG. Drives Chromium over
its DevTools protocol, so it needs ``websocket-client`` (e.g. in Label
Studio's virtual environment)::

    _build/ls-venv/bin/pip install websocket-client
    _build/ls-venv/bin/python scripts/label_studio_screenshot.py --url http://127.0.0.1:8080 \\
        --project 1 --round 1 --out docs/guide/label_studio.png
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.n = 0

    def send(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        return self.send("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")

    def goto(self, url: str, settle: float) -> None:
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while self.js("document.readyState") != "complete" and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(settle)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="1100,640", help="window WIDTH,HEIGHT")
    args = p.parse_args(argv)
    key = os.environ["LABEL_STUDIO_API_KEY"]
    req = urllib.request.Request(f"{args.url}/api/dm/views/?project={args.project}",
                                 headers={"Authorization": f"Token {key}"})
    views = json.load(urllib.request.urlopen(req))
    view = [v for v in views if v["data"]["title"].startswith(f"pcoreset round {args.round}:")][0]
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="ls-shot-")
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--window-size={args.size}", f"--remote-debugging-port={port}",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.2)
        page = Page([t for t in targets if t["type"] == "page"][0]["webSocketDebuggerUrl"])
        page.send("Page.enable")
        page.goto(f"{args.url}/user/login/", 2)
        user, password = json.dumps(os.environ["LABEL_STUDIO_USERNAME"]), json.dumps(os.environ["LABEL_STUDIO_PASSWORD"])
        page.js(f"document.querySelector('input[name=email]').value = {user};"
                f"document.querySelector('input[name=password]').value = {password};"
                "document.querySelector('form').submit();")
        time.sleep(4)
        page.goto(f"{args.url}/projects/{args.project}/data?tab={view['id']}&labeling=1", 12)
        png = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
        with open(args.out, "wb") as fh:
            fh.write(png)
        print(f"wrote {args.out} ({len(png)} bytes) of tab {view['data']['title']!r}")
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
