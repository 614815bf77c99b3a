"""The Label Studio oracle against a real Label Studio server (no mock).

The module starts ``label-studio`` once (scripts/label_studio_server.py: a free
local port, a temporary data folder with SQLite, the user and API key from
the environment) and stops it by its PID at the end. The labels are given
through the server's REST API, as a labeler's client would: choosing a class
or skipping the tasks of the round's tab, in the order the tab lists them.

Without a label-studio executable the tests skip; with PCORESET_REQUIRE_LABEL_STUDIO=1
(set by CI) a missing or broken server fails them."""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pcoreset.cli import main
from pcoreset.errors import InvalidInputError
from test_activekd import CLASSES, make_dataset, run_args

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _server_module():
    spec = importlib.util.spec_from_file_location("label_studio_server", REPO / "scripts" / "label_studio_server.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Labeler:
    """A person's client of the Label Studio REST API (with the same key as
    the run, as a project manager who also labels)."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {self.key}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def new_project(self, title, label_config=None):
        body = {"title": title}
        if label_config is not None:
            body["label_config"] = label_config
        return self.call("POST", "/api/projects", body)["id"]

    def tab(self, project, round_k):
        """(title, tasks in the order the round's tab lists them)."""
        views = [v for v in self.call("GET", f"/api/dm/views/?project={project}")
                 if v["data"]["title"].startswith(f"pcoreset round {round_k}:")]
        assert len(views) == 1, [v["data"]["title"] for v in views]
        got = self.call("GET", f"/api/tasks?view={views[0]['id']}&page_size=1000")
        return views[0]["data"]["title"], got["tasks"]

    def task_of(self, project, sample_id):
        got = self.call("GET", f"/api/tasks?project={project}&page_size=1000")
        found = [t for t in got["tasks"] if t["data"].get("pcoreset_id") == sample_id]
        assert len(found) == 1
        return found[0]

    def label(self, task_id, choice):
        self.call("POST", f"/api/tasks/{task_id}/annotations/",
                  {"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                               "value": {"choices": [choice]}}]})

    def skip(self, task_id):
        self.call("POST", f"/api/tasks/{task_id}/annotations/", {"result": [], "was_cancelled": True})


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    srv = _server_module()
    exe = srv.find_label_studio()
    required = os.environ.get("PCORESET_REQUIRE_LABEL_STUDIO") == "1"
    if exe is None:
        why = ("no label-studio executable (python3 -m venv _build/ls-venv && "
               "_build/ls-venv/bin/pip install label-studio)")
        if required:
            pytest.fail(f"PCORESET_REQUIRE_LABEL_STUDIO=1 but {why}")
        pytest.skip(why)
    key = secrets.token_hex(20)
    server = srv.start(tmp_path_factory.mktemp("label_studio"), exe=exe, username="labeler@example.com",
                       password=secrets.token_hex(8), api_key=key)
    try:
        yield Labeler(server.url, key)
    finally:
        server.stop()
        assert server.proc.poll() is not None


@pytest.fixture
def key_env(label_studio, monkeypatch, tmp_path):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.key)
    monkeypatch.setenv("PCORESET_CACHE", str(tmp_path / "cache"))
    return label_studio


def _spec(ls, project):
    return f"label-studio://{ls.url.split('://', 1)[1]}/{project}"


def _state(out: Path):
    """Every round's picks, labels, skipped rows and metrics (without timings)."""
    rounds = {}
    for rd in sorted((out / "rounds").iterdir(), key=lambda p: int(p.name)):
        got = {}
        for name in ("picks", "labels", "skipped"):
            if (rd / f"{name}.npy").is_file():
                got[name] = np.load(rd / f"{name}.npy").tolist()
        if (rd / "metrics.json").is_file():
            m = json.loads((rd / "metrics.json").read_text())
            got["metrics"] = {k: v for k, v in m.items() if not k.endswith("_s")}
        rounds[int(rd.name)] = got
    return rounds


def _pending(out: Path):
    """(round, picks) of the open round."""
    k = max(int(p.name) for p in (out / "rounds").iterdir())
    assert not (out / "rounds" / str(k) / "metrics.json").exists()
    return k, np.load(out / "rounds" / str(k) / "picks.npy")


def _cli(args, kill_at=None):
    """`pcoreset ARGS` in a subprocess; with `kill_at`, SIGKILLed just before
    the first write of a file whose path ends with it (tests/_write_faults.py)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [str(REPO / "tests" / "_write_faults.py"), kill_at, "-", "--"] if kill_at else ["-m", "pcoreset"]
    return subprocess.run([sys.executable, *cmd, *args], env=env, capture_output=True, text=True, timeout=300)


def test_label_studio_run_equals_csv_run_with_skips_out_of_order_labels_and_a_kill(key_env, tmp_path):
    ls = key_env
    data, logits, y = make_dataset(tmp_path, pool_labels=False)
    truth = {f"s{i:03d}": CLASSES[c] for i, c in enumerate(y)}
    (tmp_path / "seed.txt").write_text("s000\ns001\ns002\n")
    project = ls.new_project("pcoreset test run")
    ls_out, csv_out, csv_file = tmp_path / "ls_run", tmp_path / "csv_run", tmp_path / "labels.csv"
    csv_file.write_text("id,label\n")
    common = ("--initial-labeled", str(tmp_path / "seed.txt"))
    ls_args = run_args(ls_out, data, logits, *common, "--oracle", _spec(ls, project))
    csv_args = run_args(csv_out, data, logits, *common, "--oracle", str(csv_file))

    def both(kill_at=None):
        if kill_at is None:
            assert main(ls_args) == 0
            assert main(csv_args) == 0
            return
        for args in (ls_args, csv_args):
            proc = _cli(args, kill_at)
            assert proc.returncode == -9, proc.stderr  # SIGKILLed, like a power cut

    def give(round_k, decide):
        """The labeler works through the round's tab in its order; `decide`
        maps a sample id to a class name or 'skip'. The CSV run gets the same."""
        title, tasks = ls.tab(project, round_k)
        k, picks = _pending(ls_out)
        assert k == round_k
        assert [t["data"]["pcoreset_id"] for t in tasks] == [f"s{int(r):03d}" for r in picks]  # pick order
        assert title == f"pcoreset round {round_k}: {len(picks)} to label"
        lines = []
        for t in tasks:
            if t["total_annotations"] or t["cancelled_annotations"]:
                continue  # answered earlier: nobody is asked twice
            sid = t["data"]["pcoreset_id"]
            choice = decide(sid)
            if choice == "skip":
                ls.skip(t["id"])
            else:
                ls.label(t["id"], choice)
            lines.append(f"{sid},{choice}\n")
        with open(csv_file, "a") as fh:
            fh.writelines(lines)

    both()  # imports the pool, asks for round 0
    tasks = ls.call("GET", f"/api/tasks?project={project}&page_size=1000")["tasks"]
    assert sorted(t["data"]["pcoreset_id"] for t in tasks) == [f"s{i:03d}" for i in range(90)]  # the pool only
    assert all(t["data"]["text"] for t in tasks)
    config = ls.call("GET", f"/api/projects/{project}")["label_config"]
    assert all(f'<Choice value="{c}"/>' in config for c in CLASSES)
    give(0, truth.get)
    # a label nobody asked for (people label what they like): s050, while round 0 is open
    ls.label(ls.task_of(project, "s050")["id"], truth["s050"])
    with open(csv_file, "a") as fh:
        fh.write(f"s050,{truth['s050']}\n")
    both()
    assert _pending(ls_out)[0] == 1
    skipped_ids = []

    def skip_two(sid):
        if len(skipped_ids) < 2:
            skipped_ids.append(sid)
            return "skip"
        return truth[sid]

    # round 1 is open: someone labels a row nobody asked for, then works through the tab
    unasked = min(set(range(90)) - set(np.load(ls_out / "rounds" / "0" / "picks.npy").tolist())
                  - set(_pending(ls_out)[1].tolist()))
    ls.label(ls.task_of(project, f"s{unasked:03d}")["id"], truth[f"s{unasked:03d}"])
    with open(csv_file, "a") as fh:
        fh.write(f"s{unasked:03d},{truth[f's{unasked:03d}']}\n")
    give(1, skip_two)  # the first two picks skipped, the rest labeled
    both()  # replaces the two skipped picks
    k, picks = _pending(ls_out)
    assert k == 1 and not {f"s{int(r):03d}" for r in picks} & set(skipped_ids)
    give(1, truth.get)  # the replacements
    # round 1 finishes, round 2 is picked, then the power goes (at the write
    # that follows the saved picks: summary.csv)
    both("/summary.csv")
    assert _state(ls_out) == _state(csv_out)
    both()  # resumes: the same round-2 picks, asked in Label Studio now
    give(2, truth.get)
    both()
    ls_state, csv_state = _state(ls_out), _state(csv_out)
    assert ls_state == csv_state
    assert sorted(ls_state) == [0, 1, 2] and all("metrics" in r for r in ls_state.values())
    assert sorted(f"s{r:03d}" for r in ls_state[1]["skipped"]) == sorted(skipped_ids)
    # the labels nobody asked for joined the round open at the time (in round
    # 1, as a center of its continued selection), and nobody was asked for them
    assert ls_state[0]["picks"][-1] == 50 and ls_state[0]["metrics"]["num_given"] == 1
    assert ls_state[1]["picks"][-1] == unasked and ls_state[1]["metrics"]["num_given"] == 1
    asked = [t["data"]["pcoreset_id"] for k in (0, 1, 2) for t in ls.tab(project, k)[1]]
    assert "s050" not in asked and f"s{unasked:03d}" not in asked
    all_labeled = [r for st in ls_state.values() for r in st["picks"]]
    for st in ls_state.values():
        assert st["labels"] == [int(y[r]) for r in st["picks"]]
    assert len(set(all_labeled)) == len(all_labeled)
    # rerunning changes nothing and imports nothing again
    before = _state(ls_out)
    assert main(ls_args) == 0
    assert _state(ls_out) == before
    assert ls.call("GET", f"/api/projects/{project}")["task_number"] == 90


def test_oracle_wait_polls_until_the_round_is_labeled(key_env, tmp_path):
    ls = key_env
    data, logits, y = make_dataset(tmp_path, pool_labels=False)
    truth = {f"s{i:03d}": CLASSES[c] for i, c in enumerate(y)}
    (tmp_path / "seed.txt").write_text("s000\ns001\ns002\n")
    project = ls.new_project("pcoreset wait")
    out = tmp_path / "run"
    args = run_args(out, data, logits, "--initial-labeled", str(tmp_path / "seed.txt"), "--rounds", "1",
                    "--oracle", _spec(ls, project), "--oracle-wait", "240")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pcoreset", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        done = set()
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            views = ls.call("GET", f"/api/dm/views/?project={project}")
            for v in views:
                got = ls.call("GET", f"/api/tasks?view={v['id']}&page_size=1000")["tasks"]
                for t in got:
                    if t["id"] not in done and not t["total_annotations"]:
                        ls.label(t["id"], truth[t["data"]["pcoreset_id"]])
                        done.add(t["id"])
            time.sleep(1.0)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert (out / "rounds" / "1" / "metrics.json").is_file(), stdout  # no stop for labels: it waited
    assert len(done) == 3 + 6


def _one_line_error(capsys, args, *expect):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for e in expect:
        assert e in err, err
    return err


def test_errors_a_person_can_act_on(key_env, tmp_path, capsys, monkeypatch):
    ls = key_env
    data, logits, y = make_dataset(tmp_path, pool_labels=False)
    (tmp_path / "seed.txt").write_text("s000\ns001\ns002\n")
    out = tmp_path / "run"
    base = run_args(out, data, logits, "--initial-labeled", str(tmp_path / "seed.txt"))
    srv = _server_module()
    dead = f"label-studio://127.0.0.1:{srv.free_port()}/1"
    _one_line_error(capsys, base + ["--oracle", dead], "does not answer", "label-studio start")
    project = ls.new_project("pcoreset errors")
    _one_line_error(capsys, base + ["--oracle", _spec(ls, project + 100)], f"project {project + 100} does not exist",
                    "pcoreset errors")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    _one_line_error(capsys, base + ["--oracle", _spec(ls, project)], "refuses the API key", "LABEL_STUDIO_API_KEY")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    _one_line_error(capsys, base + ["--oracle", _spec(ls, project)], "set the environment variable LABEL_STUDIO_API_KEY")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.key)
    assert not out.exists() or not (out / "rounds").exists()  # nothing started
    # a labeling config without all the classes
    lacking = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
               '<Choice value="animal"/><Choice value="tool"/></Choices></View>')
    other = ls.new_project("pcoreset lacking", lacking)
    _one_line_error(capsys, base + ["--oracle", _spec(ls, other)], "lacks the classes ['food']")
    # an annotation whose label is not a class: one line; fixed in Label Studio, the run goes on
    extra = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
             + "".join(f'<Choice value="{c}"/>' for c in CLASSES + ["unicorn"]) + "</Choices></View>")
    mine = ls.new_project("pcoreset unicorn", extra)
    args = base + ["--oracle", _spec(ls, mine)]
    assert main(args) == 0
    _, tasks = ls.tab(mine, 0)
    for t in tasks:
        ls.label(t["id"], "unicorn" if t["data"]["pcoreset_id"] == "s001" else CLASSES[y[int(t['data']['pcoreset_id'][1:])]])
    capsys.readouterr()
    err = _one_line_error(capsys, args, "'unicorn'", "'s001'", "correct it in Label Studio")
    assert "Traceback" not in err
    bad = [t for t in tasks if t["data"]["pcoreset_id"] == "s001"][0]
    ann = ls.call("GET", f"/api/tasks/{bad['id']}/annotations/")[0]
    ls.call("PATCH", f"/api/annotations/{ann['id']}/",
            {"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                         "value": {"choices": [CLASSES[y[1]]]}}]})
    assert main(args) == 0
    assert (out / "rounds" / "0" / "metrics.json").is_file()
    np.testing.assert_array_equal(np.load(out / "rounds" / "0" / "labels.npy"), y[:3])


def test_spec_and_key_errors_need_no_server(monkeypatch):
    from pcoreset.activekd.oracles import make_oracle

    with pytest.raises(InvalidInputError, match="expected label-studio://HOST:PORT/PROJECT_ID"):
        make_oracle("label-studio://localhost:8080/").check()
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="LABEL_STUDIO_API_KEY"):
        make_oracle("label-studio://localhost:8080/3").check()


def test_personal_access_token_is_exchanged_and_refreshed(key_env, tmp_path, monkeypatch):
    # Label Studio's newer keys are personal access tokens (JWT refresh tokens):
    # the oracle exchanges one for an access token, and for a new one when
    # that expires (minutes), without the person doing anything.
    from pcoreset.activekd.oracles import make_oracle

    ls = key_env
    pat = ls.call("POST", "/api/token/", {})["token"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    project = ls.new_project("pcoreset personal token")
    oracle = make_oracle(_spec(ls, project), echo=lambda s: None)
    oracle.check()
    assert oracle.http._auth.startswith("Bearer ") and pat not in oracle.http._auth
    oracle.http._auth = "Bearer " + ".".join(["expired"] * 3)
    data, _, _ = make_dataset(tmp_path, n_pool=12, n_test=3, pool_labels=False)
    from pcoreset.activekd import RunConfig
    from pcoreset.activekd.datasets import load_dataset

    ds = load_dataset(RunConfig(dataset=str(data), classes=CLASSES))
    oracle.prepare(ds, tmp_path)
    assert ls.call("GET", f"/api/projects/{project}")["task_number"] == 12
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat[:-2] + "xx")
    with pytest.raises(InvalidInputError, match="refuses the personal access token"):
        make_oracle(_spec(ls, project)).check()


def test_image_tasks_show_urls_as_they_are_and_other_images_inline(tmp_path):
    import base64

    from PIL import Image

    from pcoreset.activekd.oracles.label_studio import _image_url, labeling_config

    assert _image_url("https://example.org/a.jpg") == "https://example.org/a.jpg"
    assert _image_url("s3://bucket/a.png") == "s3://bucket/a.png"
    img = Image.new("RGB", (4, 3), (200, 10, 10))
    img.save(tmp_path / "a.png")
    url = _image_url(str(tmp_path / "a.png"))
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == (tmp_path / "a.png").read_bytes()

    class InMemory:  # like the Fashion-MNIST items
        def load(self):
            return img

    inline = _image_url(InMemory())
    import io

    back = Image.open(io.BytesIO(base64.b64decode(inline.split(",", 1)[1])))
    assert back.size == (4, 3) and back.getpixel((0, 0)) == (200, 10, 10)
    config = labeling_config(["shirt", "bag"], "image")
    assert '<Image name="image" value="$image"' in config and 'toName="image"' in config


def test_import_cut_short_resumes_without_duplicates(key_env, tmp_path, monkeypatch):
    # The connection drops after two of the pool's import batches: the next
    # prepare imports only the rest, and a third imports nothing.
    from pcoreset.activekd import RunConfig
    from pcoreset.activekd.datasets import load_dataset
    from pcoreset.activekd.oracles import label_studio as LS
    from pcoreset.activekd.oracles import make_oracle

    ls = key_env
    data, _, _ = make_dataset(tmp_path, n_pool=25, n_test=5, pool_labels=False)
    ds = load_dataset(RunConfig(dataset=str(data), classes=CLASSES))
    project = ls.new_project("pcoreset import cut")
    monkeypatch.setattr(LS, "IMPORT_BATCH", 10)
    oracle = make_oracle(_spec(ls, project), echo=lambda s: None)
    real_call, imports = oracle.http.call, []

    def cut(method, path, body=None, **query):
        if path.endswith("/import"):
            imports.append(len(body))
            if len(imports) == 3:
                raise InvalidInputError("connection lost")
        return real_call(method, path, body, **query)

    monkeypatch.setattr(oracle.http, "call", cut)
    with pytest.raises(InvalidInputError, match="connection lost"):
        oracle.prepare(ds, tmp_path)
    assert ls.call("GET", f"/api/projects/{project}")["task_number"] == 20
    again = make_oracle(_spec(ls, project), echo=lambda s: None)
    again.prepare(ds, tmp_path)
    again.prepare(ds, tmp_path)
    tasks = ls.call("GET", f"/api/tasks?project={project}&page_size=1000")["tasks"]
    assert sorted(t["data"]["pcoreset_id"] for t in tasks) == [f"s{i:03d}" for i in range(25)]
