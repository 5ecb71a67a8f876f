"""`attn-search dashboard`: a real server on 127.0.0.1 for the wiring, the errors in-process.

One tiny Optuna run (digits cut to 200 examples, 3 trials of 1 epoch, no finalists) is served
by `attn-search dashboard` as a subprocess; the test fetches the page and the JSON API that
optuna-dashboard's own frontend reads (`/api/studies`, `/api/studies/<id>`), then stops it
with Ctrl-C (SIGINT). Every wait is bounded in tries and seconds; nothing listens beyond
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

from attn_search.cli import main
from attn_search.dashboard import find_study, open_dashboard
from attn_search.errors import ConfigError, RunDirError
from attn_search.runfolder import RunFolder

pytest.importorskip("optuna_dashboard")

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> pathlib.Path:
    from attn_search.runner import run_search

    out = tmp_path_factory.mktemp("dashboard") / "run"
    run_search(
        dataset="digits",
        limit=200,
        trials=3,
        max_epochs=1,
        finalists=0,
        engine="optuna",
        sampler="random",
        pruner="none",
        quiet=True,
        out=str(out),
    )
    return out


def _command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "attn-search"
    return [str(script)] if script.exists() else [sys.executable, "-m", "attn_search"]


def _first_line(proc: subprocess.Popen, seconds: float) -> str:
    """The process's first line of stdout, waiting at most `seconds`."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=seconds):
            return ""
        return proc.stdout.readline()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get_content_type(), response.read()


def _poll(url: str, tries: int = 50) -> bytes:
    """GET `url` until it answers 200 (at most `tries` times, 0.2 s apart)."""
    for _ in range(tries):
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            status, _, body = _get(url)
            if status == 200:
                return body
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer after {tries} tries")


# --------------------------------------------------------------------------- the real server
def test_dashboard_serves_the_runs_study_with_family_placement_and_params(run_dir):
    board = RunFolder(run_dir).read_leaderboard()
    proc = subprocess.Popen(
        [*_command(), "dashboard", str(run_dir), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        line = _first_line(proc, seconds=120)
        assert line.startswith("optuna-dashboard: http://127.0.0.1:"), (line, proc.poll())
        study_url = line.split()[1]
        assert line == f"optuna-dashboard: {study_url}  (Ctrl-C stops it)\n"
        base, study_id = study_url.split("/dashboard/studies/")

        studies = json.loads(_poll(f"{base}/api/studies"))["study_summaries"]
        assert [(s["study_id"], s["study_name"]) for s in studies] == [
            (int(study_id), "attn-search")
        ]
        status, kind, page = _get(study_url)
        assert (status, kind) == (200, "text/html")
        assert b"<title>Optuna Dashboard</title>" in page

        detail = json.loads(_poll(f"{base}/api/studies/{study_id}?after=0"))
        columns = {a["key"] for a in detail["union_user_attrs"]}
        assert {"family", "placement", "params"} <= columns
        served = {
            t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]} for t in detail["trials"]
        }
        expected = {
            int(row.trial_id): {
                "family": row.family,
                "placement": row.placement,
                "params": str(int(row.params)),
            }
            for row in board.itertuples()
        }
        assert len(expected) == 3
        assert {n: {k: attrs.get(k) for k in ("family", "placement", "params")}
                for n, attrs in served.items()} == expected  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            raise
    assert (proc.returncode, err) == (130, "attn-search: error: interrupted\n")


def test_open_dashboard_in_process_serves_until_shutdown(run_dir):
    with open_dashboard(run_dir, port=0) as dashboard:
        assert dashboard.study_url.startswith("http://127.0.0.1:")
        assert dashboard.study_url == f"{dashboard.url}/studies/1"
        server = threading.Thread(target=dashboard.serve_forever, daemon=True)
        server.start()
        try:
            base = dashboard.url.removesuffix("/dashboard")
            meta = json.loads(_poll(f"{base}/api/meta"))
            assert meta["artifact_is_available"] is False
        finally:
            dashboard.shutdown()
            server.join(timeout=10)
        assert not server.is_alive()


def test_help_and_bad_port_import_no_framework():
    script = textwrap.dedent(
        """
        import contextlib, io, json, sys
        sys.argv[0] = "attn-search"  # as the console script: `import attn_search` stays light
        from attn_search.cli import main
        codes, errors = [], []
        for argv in (["dashboard", "--help"], ["dashboard", "r", "--port", "http"]):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                codes.append(main(argv))
            errors.append(err.getvalue())
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras",
                       "optuna", "optuna_dashboard"))
        print(json.dumps({"codes": codes, "errors": errors, "heavy": heavy}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "codes": [0, 2],
        "errors": [
            "",
            "attn-search: error: --port must be an integer from 0 to 65535. "
            "Received: --port='http'\n",
        ],
        "heavy": [],
    }


# --------------------------------------------------------------------------- errors
def _folder(tmp_path: pathlib.Path, engine: dict) -> pathlib.Path:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_config({"dataset": {"name": "digits"}, "engine": engine})
    return folder.path


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunDirError) as info:
        open_dashboard(tmp_path)
    assert str(info.value) == (
        "`run_dir` is not an attn-search run folder (it has no run.json, config.yaml, "
        f"leaderboard.csv or best_model.keras). Received: run_dir='{tmp_path}'"
    )


def test_a_keras_tuner_run_has_no_study(tmp_path, capsys):
    run = _folder(tmp_path, {"name": "keras-tuner", "tuner": "random"})
    message = (
        "`run_dir` was searched with engine 'keras-tuner', which keeps no Optuna study for "
        "optuna-dashboard to show (only runs with engine 'optuna' have one); its trials are in "
        f"'attn-search leaderboard {run}' and 'attn-search report {run}', and in keras-tuner's "
        f"own files ({run}/keras_tuner/). Received: run_dir='{run}'"
    )
    with pytest.raises(RunDirError) as info:
        open_dashboard(run)
    assert str(info.value) == message
    # The command line: one line, exit 2 (the folder given is the wrong kind).
    assert main(["dashboard", str(run)]) == 2
    assert capsys.readouterr().err == f"attn-search: error: {message}\n"


def test_a_run_without_a_study_file_yet(tmp_path):
    run = _folder(tmp_path, {"name": "optuna", "storage": "sqlite:///<run folder>/study.db"})
    with pytest.raises(RunDirError) as info:
        open_dashboard(run)
    assert str(info.value) == (
        "`run_dir` has no Optuna study yet (no study.db: the run has not started a trial). "
        f"Received: run_dir='{run}'"
    )
    assert not (run / "study.db").exists()  # not created by looking


def test_a_masked_storage_url_asks_for_storage(tmp_path):
    url = "postgresql://ada:***@db.example/attn"
    run = _folder(tmp_path, {"name": "optuna", "storage": url, "study": "s"})
    with pytest.raises(ConfigError) as info:
        open_dashboard(run)
    assert str(info.value) == (
        "`storage` is required: the run's study is in postgresql://ada:***@db.example/attn and "
        "config.yaml keeps its password masked; pass the full URL with --storage (storage= in "
        f"Python). Received: run_dir='{run}'"
    )


def test_a_storage_file_that_does_not_exist_is_not_created(tmp_path):
    run = _folder(tmp_path, {"name": "optuna"})
    missing = tmp_path / "elsewhere.db"
    with pytest.raises(ConfigError) as info:
        find_study(run, storage=f"sqlite:///{missing}")
    assert str(info.value) == (
        f"`storage` names an SQLite file that does not exist ({missing}); pass the study's URL "
        "with --storage (storage= in Python), a relative path being relative to the current "
        f"folder. Received: storage='sqlite:///{missing}'"
    )
    assert not missing.exists()
    with pytest.raises(ConfigError) as info:
        find_study(run, storage="study.db")
    assert str(info.value) == (
        "`storage` must be an Optuna storage URL such as 'sqlite:///study.db' or "
        "'postgresql://user:pass@host/db'. Received: storage='study.db'"
    )


def test_a_study_name_the_storage_does_not_hold(run_dir, tmp_path):
    config = RunFolder(run_dir).read_config()
    run = _folder(tmp_path, {**config["engine"], "study": "other"})
    shutil.copy(run_dir / "study.db", run / "study.db")
    with pytest.raises(RunDirError) as info:
        open_dashboard(run, port=0)
    assert str(info.value) == (
        f"The storage sqlite:///{(run / 'study.db').resolve()} holds no study named 'other' (it "
        "holds: 'attn-search'); pass the run's storage with --storage. "
        f"Received: run_dir='{run}'"
    )


def test_the_extra_not_installed(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails
    with pytest.raises(ConfigError) as info:
        open_dashboard(run_dir)
    assert str(info.value) == (
        "`attn-search dashboard` needs optuna-dashboard, which is not installed; install it with "
        f"pip install 'attn-search[dashboard]'. Received: run_dir='{run_dir}'"
    )


def test_a_port_in_use_and_a_port_out_of_range(run_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            open_dashboard(run_dir, port=port)
    assert str(info.value) == (
        f"`port` {port} on 127.0.0.1 cannot be listened on (it is in use); choose another port "
        "with --port (port= in Python; 0 picks a free one). "
        f"Received: host='127.0.0.1', port={port}"
    )
    with pytest.raises(ConfigError) as info:
        open_dashboard(run_dir, port=70000)
    assert str(info.value) == (
        "`port` must be an integer from 0 to 65535 (0: any free port). Received: port=70000"
    )
