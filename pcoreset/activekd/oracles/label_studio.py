"""The Label Studio oracle: people label a run's picks in a Label Studio
project (``--oracle label-studio://HOST:PORT/PROJECT_ID``).

What it does with the project, through Label Studio's REST API (the standard
library's HTTP client: no extra package to install):

- the API key comes from the environment variable ``LABEL_STUDIO_API_KEY``
  only (a legacy token, sent as ``Token KEY``, or a personal access token,
  exchanged for a short-lived access token), never from the command line or
  the run folder;
- :meth:`~LabelStudioOracle.prepare` writes the labeling config (one
  ``Choices`` control whose choices are the class names) when the project has
  none, or checks that the project's own config offers every class; then it
  imports the pool rows as tasks, each with its sample id in
  ``data.pcoreset_id``. Tasks already there are found by that id and not
  imported again, so a rerun (or a run killed while importing) never
  duplicates a task;
- :meth:`~LabelStudioOracle.request` marks the round's picks in their task
  data (``pcoreset_round``, ``pcoreset_rank``: the pick order) and keeps one
  Data Manager tab per round, titled ``pcoreset round K: N to label``, that
  shows only those tasks in pick order: "Label All Tasks" in that tab serves
  them in that order. Picks dropped from the round (skipped) lose their mark;
- :meth:`~LabelStudioOracle.answers` reads the finished annotations (the
  project's JSON export): the first submitted annotation of a task gives its
  label; a task whose annotations are all skipped (cancelled) answers
  ``skip``; drafts are not answers;
- :meth:`~LabelStudioOracle.unrequested` gives the labels of tasks that were
  never asked for (people label what they like);
- :meth:`~LabelStudioOracle.wait` polls until the round is answered
  (``--oracle-wait``).

Errors a person can act on are one line each: the server does not answer,
the key is missing or refused, the project does not exist, the labeling
config lacks classes, the project holds tasks of other data, an annotation's
label is not a class. Nothing is written to the run folder before they are
raised, so the same command resumes once the cause is fixed.
"""
from __future__ import annotations

import base64
import io
import json
import mimetypes
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.sax.saxutils import quoteattr

import numpy as np

from ...errors import InvalidInputError, PcoresetError
from .base import LABEL_STUDIO_SCHEME, Oracle

__all__ = ["LabelStudioOracle", "TOKEN_ENV", "labeling_config", "parse_spec"]

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
# The task data fields pcoreset owns (the sample's content goes under "text" or "image").
ID_FIELD, ROUND_FIELD, RANK_FIELD = "pcoreset_id", "pcoreset_round", "pcoreset_rank"
CONTROL = "label"  # the name of the Choices control pcoreset writes
VIEW_PREFIX = "pcoreset round "
_SPEC = re.compile(r"^label-studio://(?P<host>\[[^\]]+\]|[^/:]+)(?::(?P<port>\d+))?/(?P<project>\d+)/?$")
IMPORT_BATCH = 500
PAGE = 1000


def parse_spec(spec: str) -> Tuple[str, int]:
    """(base URL, project id) of ``label-studio://HOST[:PORT]/PROJECT_ID``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise InvalidInputError(f"oracle={spec!r}: expected {LABEL_STUDIO_SCHEME}HOST:PORT/PROJECT_ID "
                                "(e.g. label-studio://localhost:8080/1)")
    port = f":{m['port']}" if m["port"] else ""
    return f"http://{m['host']}{port}", int(m["project"])


def labeling_config(class_names: List[str], modality: str) -> str:
    """The labeling config pcoreset writes: the sample (text or image) and one
    required single choice among the class names."""
    if modality == "image":
        obj = '  <Image name="image" value="$image" maxWidth="480px"/>\n'
        to = "image"
    else:
        obj = '  <Text name="text" value="$text"/>\n'
        to = "text"
    choices = "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in class_names)
    return ("<View>\n"
            '  <Header value="pcoreset: choose the class (Skip if you cannot tell)"/>\n'
            f"{obj}"
            f'  <Choices name="{CONTROL}" toName="{to}" choice="single-radio" required="true" showInline="true">\n'
            f"{choices}"
            "  </Choices>\n"
            "</View>\n")


class _Http:
    """JSON over HTTP with the API key, and one-line errors naming the spec."""

    timeout = 60.0

    def __init__(self, spec: str, base: str, key: str) -> None:
        self.spec, self.base, self.key = spec, base, key
        self._auth: Optional[str] = None

    def _fail(self, why: str) -> InvalidInputError:
        return InvalidInputError(f"oracle={self.spec!r}: {why}")

    def _send(self, method: str, path: str, body=None, auth: Optional[str] = None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code in (401, 403):
                raise _Refused(self._fail(f"Label Studio at {self.base} refuses the API key in ${TOKEN_ENV} "
                                          f"({detail}); copy it from Account & Settings (Legacy Token or "
                                          "Personal Access Token)"), detail) from None
            raise _HttpStatus(exc.code, f"oracle={self.spec!r}: Label Studio answered {exc.code} to "
                                        f"{method} {path}: {detail}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self._fail(f"Label Studio at {self.base} does not answer ({reason}); start it "
                             "(label-studio start) or correct HOST:PORT") from None
        except json.JSONDecodeError:
            raise self._fail(f"{self.base}{path} did not answer JSON: is it a Label Studio server?") from None

    @property
    def personal(self) -> bool:
        """A personal access token (a JWT refresh token), not a legacy token."""
        return self.key.count(".") == 2

    def auth(self) -> str:
        if self._auth is None:
            if self.personal:  # exchanged for a short-lived access token
                try:
                    got = self._send("POST", "/api/token/refresh/", {"refresh": self.key})
                except _Refused as exc:
                    raise self._fail(f"Label Studio at {self.base} refuses the personal access token in "
                                     f"${TOKEN_ENV} ({exc.detail}); create a new one in Account & Settings") from None
                self._auth = f"Bearer {got['access']}"
            else:
                self._auth = f"Token {self.key}"
        return self._auth

    def call(self, method: str, path: str, body=None, **query):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        try:
            return self._send(method, path, body, self.auth())
        except _Refused as exc:
            if not self.personal:
                raise exc.error from None
        self._auth = None  # the access token expired (minutes): get a new one, once
        try:
            return self._send(method, path, body, self.auth())
        except _Refused as exc:
            raise exc.error from None


class _HttpStatus(PcoresetError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Refused(Exception):
    """401/403: carries the one-line error for the person."""

    def __init__(self, error: InvalidInputError, detail: str) -> None:
        super().__init__(str(error))
        self.error, self.detail = error, detail


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"null")
    except (ValueError, OSError):
        return exc.reason or str(exc.code)
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "message"):
            if body.get(key):
                return " ".join(str(body[key]).split())[:300]
    return " ".join(str(body).split())[:300]


class LabelStudioOracle(Oracle):
    """Labels from the Label Studio project named by `spec`."""

    poll_seconds = 5.0  # --oracle-wait polls this often

    def __init__(self, spec: str, **kwargs) -> None:
        super().__init__(spec, **kwargs)
        self.base, self.project = parse_spec(spec)
        self._http: Optional[_Http] = None
        self._tasks: Optional[Dict[str, List[dict]]] = None  # sample id -> its tasks, lowest id first
        self._choices: Optional[Dict[str, str]] = None  # label text in results -> choice value
        self._control: Optional[str] = None
        self._asked: Optional[Tuple[str, str]] = None  # the last round's tab: (title, address)

    # -- connection ----------------------------------------------------------
    def _where(self) -> str:
        return f"oracle={self.spec!r}"

    @property
    def http(self) -> _Http:
        if self._http is None:
            key = os.environ.get(TOKEN_ENV, "").strip()
            if not key:
                raise InvalidInputError(f"{self._where()}: set the environment variable {TOKEN_ENV} to your "
                                        "Label Studio API key (Account & Settings); it is never read from the "
                                        "command line or the run folder")
            self._http = _Http(self.spec, self.base, key)
        return self._http

    def _project(self) -> dict:
        try:
            return self.http.call("GET", f"/api/projects/{self.project}")
        except _HttpStatus as exc:
            if exc.status != 404:
                raise
        try:
            listed = self.http.call("GET", "/api/projects", page_size=20).get("results", [])
            have = ", ".join(f"{p['id']} {p.get('title', '')!r}" for p in listed) or "none"
        except PcoresetError:
            have = "unknown"
        raise InvalidInputError(f"{self._where()}: project {self.project} does not exist at {self.base} "
                                f"(projects there: {have}); create one (see the Label Studio guide page) "
                                "and use its id") from None

    def check(self) -> None:
        self._project()

    # -- the labeling config -------------------------------------------------
    def _use_config(self, config: str, ds) -> bool:
        """Find the Choices control that offers every class. False when the
        config has no control at all (pcoreset may write its own)."""
        try:
            root = ET.fromstring(config or "<View/>")
        except ET.ParseError as exc:
            raise InvalidInputError(f"{self._where()}: the labeling config of project {self.project} is not "
                                    f"XML ({exc})") from None
        controls = [el for el in root.iter() if el.get("toName")]
        if not controls:
            return False
        found = []
        for el in root.iter("Choices"):
            texts = {}
            for ch in el.iter("Choice"):
                value = ch.get("value")
                if value is not None:
                    texts[ch.get("alias") or value] = value
            missing = [c for c in ds.class_names if c not in texts.values()]
            if not missing:
                self._control, self._choices = el.get("name"), texts
                field = "image" if ds.modality == "image" else "text"
                used = set(re.findall(r"\$(\w+)", config))
                if used - {field, ID_FIELD}:
                    raise InvalidInputError(
                        f"{self._where()}: the labeling config of project {self.project} shows "
                        f"${', $'.join(sorted(used - {field, ID_FIELD}))}; pcoreset's tasks carry ${field}: use "
                        f"value=\"${field}\" in the config")
                return True
            found.append((el.get("name"), missing))
        if found:
            name, missing = found[0]
            raise InvalidInputError(f"{self._where()}: the labeling config of project {self.project} lacks the "
                                    f"classes {missing} in its Choices {name!r}; add a <Choice value=\"...\"/> "
                                    "for each, or use a project without a labeling config (pcoreset writes one)")
        raise InvalidInputError(f"{self._where()}: the labeling config of project {self.project} has no Choices "
                                f"control with the classes {ds.class_names}; use a project without a labeling "
                                "config (pcoreset writes one)")

    def _ensure_config(self, ds) -> None:
        project = self._project()
        if self._use_config(project.get("label_config", ""), ds):
            return
        config = labeling_config(ds.class_names, ds.modality)
        try:
            self.http.call("PATCH", f"/api/projects/{self.project}", {"label_config": config})
        except _HttpStatus as exc:
            raise InvalidInputError(f"{self._where()}: Label Studio refused pcoreset's labeling config for "
                                    f"project {self.project}: {exc}") from None
        self._use_config(config, ds)
        self.echo(f"Label Studio project {self.project}: wrote a labeling config with the {ds.num_classes} classes")

    # -- tasks ---------------------------------------------------------------
    def _list_tasks(self) -> List[dict]:
        out, page = [], 1
        while True:
            got = self.http.call("GET", "/api/tasks", project=self.project, page=page, page_size=PAGE,
                                 fields="task_only")
            tasks = got.get("tasks", []) if isinstance(got, dict) else got
            out.extend(tasks)
            total = got.get("total", len(out)) if isinstance(got, dict) else len(out)
            if not tasks or len(out) >= total:
                return out
            page += 1

    def _load_tasks(self, ds) -> Dict[str, List[dict]]:
        ids = set(ds.ids)
        by_id: Dict[str, List[dict]] = {}
        foreign = []
        for t in self._list_tasks():
            sid = (t.get("data") or {}).get(ID_FIELD)
            if sid is None or str(sid) not in ids:
                foreign.append(t["id"])
                continue
            by_id.setdefault(str(sid), []).append(t)
        if foreign:
            raise InvalidInputError(f"{self._where()}: project {self.project} holds {len(foreign)} tasks that are "
                                    f"not rows of this dataset (e.g. task {foreign[0]}); use a project of its own "
                                    "for each dataset")
        for ts in by_id.values():
            ts.sort(key=lambda t: t["id"])
        self._tasks = by_id
        return by_id

    def _task_data(self, ds, row: int) -> dict:
        data = {ID_FIELD: ds.ids[row]}
        if ds.modality == "image":
            data["image"] = _image_url(ds.items[row])
        else:
            data["text"] = ds.texts[row] if ds.texts is not None else ds.ids[row]
        return data

    def prepare(self, ds, run_dir) -> None:  # noqa: ARG002 (nothing of the server goes into the run folder)
        self._ensure_config(ds)
        have = self._load_tasks(ds)
        missing = [int(r) for r in ds.pool_idx if ds.ids[r] not in have]
        if not missing:
            return
        for start in range(0, len(missing), IMPORT_BATCH):
            batch = [self._task_data(ds, r) for r in missing[start:start + IMPORT_BATCH]]
            try:
                self.http.call("POST", f"/api/projects/{self.project}/import", batch)
            except _HttpStatus as exc:
                raise InvalidInputError(f"{self._where()}: Label Studio refused the pool's tasks: {exc}") from None
        self.echo(f"Label Studio project {self.project}: imported {len(missing)} pool rows as tasks")
        self._load_tasks(ds)

    def _tasks_of(self, ds) -> Dict[str, List[dict]]:
        return self._tasks if self._tasks is not None else self._load_tasks(ds)

    def _patch_data(self, task: dict, data: dict) -> None:
        self.http.call("PATCH", f"/api/tasks/{task['id']}", {"data": data})
        task["data"] = data

    def request(self, round_k: int, rows: np.ndarray, ds) -> None:
        tasks = self._tasks_of(ds)
        wanted = {}
        for j, r in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
            ts = tasks.get(ds.ids[r])
            if not ts:
                raise InvalidInputError(f"{self._where()}: id {ds.ids[r]!r} has no task in project "
                                        f"{self.project} (deleted?); rerun to import it again")
            wanted[ts[0]["id"]] = j
        for ts in tasks.values():
            for t in ts:
                data = dict(t.get("data") or {})
                rank = wanted.get(t["id"])
                if rank is not None and (data.get(ROUND_FIELD), data.get(RANK_FIELD)) != (round_k, rank):
                    data[ROUND_FIELD], data[RANK_FIELD] = round_k, rank
                    self._patch_data(t, data)
                elif rank is None and data.get(ROUND_FIELD) == round_k:  # dropped from the round (skipped)
                    data.pop(ROUND_FIELD, None)
                    data.pop(RANK_FIELD, None)
                    self._patch_data(t, data)
        title = f"{VIEW_PREFIX}{round_k}: {len(wanted)} to label"
        view = {"title": title,
                "filters": {"conjunction": "and", "items": [
                    {"filter": f"filter:tasks:data.{ROUND_FIELD}", "operator": "equal", "type": "Number",
                     "value": int(round_k)}]},
                "ordering": [f"tasks:data.{RANK_FIELD}"]}
        views = self.http.call("GET", "/api/dm/views/", project=self.project) or []
        mine = [v for v in views if str((v.get("data") or {}).get("title", "")).startswith(f"{VIEW_PREFIX}{round_k}:")]
        if mine:
            if (mine[0].get("data") or {}) != view:
                self.http.call("PATCH", f"/api/dm/views/{mine[0]['id']}/", {"project": self.project, "data": view})
        else:
            self.http.call("POST", "/api/dm/views/", {"project": self.project, "data": view})
        self._asked = (title, f"{self.base}/projects/{self.project}/data")
        self.echo(f"round {round_k}: {len(wanted)} picks wanted in Label Studio project {self.project}, "
                  f"tab '{title}' ({self._asked[1]})")

    def waiting_hint(self, run_dir) -> str:  # noqa: ARG002
        where = f"tab '{self._asked[0]}' of {self._asked[1]}" if self._asked else f"project {self.project}"
        return (f"Label them in Label Studio ({where}; Skip for a row nobody can label) and run the same "
                "command again, or add --oracle-wait SECONDS to wait for them.")

    # -- answers -------------------------------------------------------------
    def _labels(self, ds) -> Dict[int, str]:
        """row -> label text of every task with a finished annotation."""
        if self._control is None:
            self._use_config(self._project().get("label_config", ""), ds)
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        exported = self.http.call("GET", f"/api/projects/{self.project}/export", exportType="JSON",
                                  download_all_tasks="false")
        found: Dict[int, Tuple[int, str]] = {}  # row -> (annotation id, label); the first annotation wins
        for task in exported or []:
            row = pos.get(str((task.get("data") or {}).get(ID_FIELD)))
            if row is None:
                continue
            anns = sorted(task.get("annotations") or [], key=lambda a: a.get("id", 0))
            label = None
            for ann in anns:
                if ann.get("was_cancelled"):
                    continue
                label = (ann.get("id", 0), self._label_of(ann, task, ds))
                break
            if label is None and anns:
                label = (anns[0].get("id", 0), "skip")
            if label is not None and (row not in found or label[0] < found[row][0]):
                found[row] = label
        return {r: lab for r, (_, lab) in found.items()}

    def _label_of(self, ann: dict, task: dict, ds) -> str:
        picked = [c for res in ann.get("result") or [] if res.get("from_name") == self._control
                  for c in (res.get("value") or {}).get("choices") or []]
        sid = (task.get("data") or {}).get(ID_FIELD)
        if len(picked) != 1:
            raise InvalidInputError(f"{self._where()}: annotation {ann.get('id')} of task {task.get('id')} (id "
                                    f"{sid!r}) chose {picked or 'nothing'} in {self._control!r}; correct it in "
                                    "Label Studio to one class (or skip the task) and rerun")
        text = self._choices.get(picked[0], picked[0])
        if text not in ds.class_names:
            raise InvalidInputError(f"{self._where()}: annotation {ann.get('id')} of task {task.get('id')} (id "
                                    f"{sid!r}) has label {picked[0]!r}, not one of {ds.class_names}; correct it in "
                                    "Label Studio and rerun")
        return text

    def answers(self, ds, rows: np.ndarray) -> Dict[int, str]:
        want = set(np.asarray(rows, dtype=np.int64).tolist())
        return {r: lab for r, lab in self._labels(ds).items() if r in want}

    def unrequested(self, ds, asked: set) -> Dict[int, str]:
        asked = {int(r) for r in asked}
        return {r: lab for r, lab in self._labels(ds).items() if r not in asked and not ds.is_test[r]}

    def wait(self, ds, rows: np.ndarray, seconds: float) -> None:
        """Poll until every row has an answer, or one is a skip (the loop then
        replaces it at once), or `seconds` have passed."""
        if not seconds or seconds <= 0:
            return
        deadline = time.monotonic() + float(seconds)
        n = len(rows)
        while True:
            got = self.answers(ds, rows)
            if len(got) >= n or any(v == "skip" for v in got.values()):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(self.poll_seconds, left))


def _image_url(item) -> str:
    """What an Image tag can show for a dataset item: URLs as they are, other
    images inline as a data: URL (local files and in-memory arrays; Label
    Studio serves local files only from a configured local storage)."""
    if isinstance(item, (str, Path)):
        text = str(item)
        if re.match(r"^(https?|s3|gs|azure-blob)://", text) or text.startswith("/data/"):
            return text
        path = Path(text)
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    img = item.load() if hasattr(item, "load") else item
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
