#!/usr/bin/env python
"""Start a local Label Studio server for pcoreset's Label Studio oracle: on a
given (or free) port, with its own data folder and SQLite database, and a user
and API key taken from the environment. Used by the tests
(tests/test_label_studio.py) and by the guide page.

Label Studio pins its own versions of Django and friends: install it in a
virtual environment of its own (it is a separate service, as in real use)::

    python3 -m venv _build/ls-venv && _build/ls-venv/bin/pip install "label-studio==1.23.2" "sentry-sdk<3"

Then::

    export LABEL_STUDIO_USERNAME=me@example.com LABEL_STUDIO_PASSWORD=choose-one
    export LABEL_STUDIO_API_KEY=$(python3 -c "import secrets; print(secrets.token_hex(20))")
    python scripts/label_studio_server.py --port 8080 --data-dir ls-data

runs the server in the foreground (Ctrl-C stops it) once it answers; the API
key is the user's legacy token, so ``LABEL_STUDIO_API_KEY`` works at once for
``pcoreset run --oracle label-studio://localhost:8080/PROJECT_ID``.

The executable is ``--label-studio``, else ``$PCORESET_LABEL_STUDIO``, else
``_build/ls-venv/bin/label-studio`` in this checkout, else ``label-studio`` on
the PATH."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
VENV_EXE = REPO / "_build" / "ls-venv" / "bin" / "label-studio"


def find_label_studio(explicit: Optional[str] = None) -> Optional[str]:
    """The label-studio executable to run, or None when there is none."""
    for cand in (explicit, os.environ.get("PCORESET_LABEL_STUDIO"), str(VENV_EXE)):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("label-studio")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running Label Studio: ``url``, ``pid``; :meth:`stop` ends it."""

    def __init__(self, proc: subprocess.Popen, url: str, data_dir: Path, log: Path) -> None:
        self.proc, self.url, self.data_dir, self.log = proc, url, data_dir, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group (it was started in a session
        of its own), SIGKILL if it has not ended after `timeout` seconds."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


def start(data_dir, *, port: int = 0, host: str = "127.0.0.1", exe: Optional[str] = None,
          username: Optional[str] = None, password: Optional[str] = None, api_key: Optional[str] = None,
          timeout: float = 600.0) -> Server:
    """Start Label Studio with its data (SQLite database, media) in `data_dir`
    and return once ``/health`` answers. The user and the API key (a legacy
    token) come from the arguments or LABEL_STUDIO_USERNAME, LABEL_STUDIO_PASSWORD
    and LABEL_STUDIO_API_KEY; the first start creates them."""
    exe = find_label_studio(exe)
    if exe is None:
        raise FileNotFoundError("no label-studio executable: python3 -m venv _build/ls-venv && "
                                "_build/ls-venv/bin/pip install \"label-studio==1.23.2\" \"sentry-sdk<3\"")
    username = username or os.environ.get("LABEL_STUDIO_USERNAME")
    password = password or os.environ.get("LABEL_STUDIO_PASSWORD")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not (username and password and api_key):
        raise ValueError("set LABEL_STUDIO_USERNAME, LABEL_STUDIO_PASSWORD and LABEL_STUDIO_API_KEY")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = dict(os.environ,
               LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
               LABEL_STUDIO_USERNAME=username, LABEL_STUDIO_PASSWORD=password, LABEL_STUDIO_USER_TOKEN=api_key,
               # the user's token is a legacy token: the API key works as soon as the server is up
               LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = data_dir / "label_studio.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([exe, "start", "--no-browser", "--host", host, "--port", str(port)],
                                cwd=str(data_dir), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(proc, f"http://{host}:{port}", data_dir, log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"label-studio exited with {proc.returncode} before answering:\n{tail}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"label-studio did not answer at {server.url} within {timeout:.0f}s (log: {log})")
        time.sleep(1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8080, help="port (0: a free one; default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--data-dir", required=True, help="Label Studio's data folder (SQLite database, media)")
    p.add_argument("--label-studio", default=None, help="the label-studio executable")
    args = p.parse_args(argv)
    try:
        server = start(args.data_dir, port=args.port, host=args.host, exe=args.label_studio)
    except (FileNotFoundError, ValueError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Label Studio answers at {server.url} (pid {server.pid}, log {server.log}); Ctrl-C stops it", flush=True)
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
