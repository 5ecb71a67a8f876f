"""Many workers, one study: real processes on the journal storage, on PostgreSQL, and
KerasTuner's chief and workers.

The PostgreSQL tests start a throwaway server (Debian's `initdb` and `pg_ctl`, as the
`postgres` user when run as root) on a free loopback port in a temporary folder, and stop it;
without the binaries they are skipped, except on CI (`CI=true`), where `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from attn_search.engines import OptunaEngine
from attn_search.engines._optuna_storage import (
    STORAGE_ENV,
    Heartbeat,
    open_storage,
    storage_url,
    with_driver,
)
from attn_search.errors import ConfigError
from attn_search.formatting import mask_url

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "--dataset", "digits", "--limit", "120", "--max-epochs", "1", "--sampler", "random",
    "--pruner", "none", "--finalists", "1", "--repeats", "1",
]  # fmt: skip
PASSWORD = "s3cret-Pw-4711"


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attn_search", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.fspath(ROOT), **(env or {})},
        **kw,
    )


def _search_trials(url: str, study: str = "attn-search") -> list:
    import optuna

    storage = open_storage(url, pathlib.Path("."), on_stale=lambda *_: None)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _assert_exact(url: str, trials: int) -> list[dict]:
    """Exactly `trials` counted search trials, unique ids, none running or waiting, the
    plain baseline once; returns the records."""
    from optuna.trial import TrialState

    states = [t.state for t in _search_trials(url)]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    records = OptunaEngine.attach(url).records()
    counted = [r for r in records if not r.get("interrupted")]
    assert len(counted) == trials
    assert len({r["trial_id"] for r in records}) == len(records)
    defaults = [r for r in counted if r["family"] == "plain" and r.get("twin_of") is None]
    assert [r["hp"].get("train/learning_rate") for r in defaults][:1] == [0.001]
    return records


def _units(url: str) -> list[str]:
    """The finalist units done, one key per finished unit (each fit claimed once)."""
    import optuna
    from optuna.trial import TrialState

    storage = open_storage(url, pathlib.Path("."), on_stale=lambda *_: None)
    keys = []
    for name in optuna.get_all_study_names(storage):
        if name.startswith("attn-search.finalists."):
            study = optuna.load_study(study_name=name, storage=storage)
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            keys += [t.user_attrs["unit"] for t in done]
    return keys


def _same_tables(folders: list[pathlib.Path]) -> None:
    for name in ("leaderboard.csv", "comparison.csv", "finalists.json"):
        texts = {(f / name).read_text() for f in folders}
        assert len(texts) == 1, name


# --- three workers on the default local storage (a journal file) ----------------------------
@pytest.fixture(scope="module")
def journal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("workers") / "run"
    proc = _cli("run", *TINY, "--trials", "4", "--workers", "3", "--out", os.fspath(out))
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return out, output


def test_three_workers_share_one_budget_and_the_finalists(journal_run):
    out, output = journal_run
    url = f"journal:///{out.resolve() / 'study.journal'}"
    _assert_exact(url, 4)
    keys = _units(url)
    assert len(keys) == len(set(keys)) == 1  # one fit group (1 finalist x 1 seed), done once
    fits = json.loads((out / "finalists.json").read_text())["runs"]
    assert sorted(f["family"] for f in fits) == ["attention", "matched", "plain"]
    workers = sorted((out / "workers").glob("worker-*/"))
    assert [w.name for w in workers] == ["worker-1", "worker-2", "worker-3"]
    _same_tables([*workers, out])
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and [w["exit_code"] for w in info["workers"]] == [0] * 3
    assert (out / "best_model.keras").is_file()
    assert "[worker 3]" in output


def test_leaderboard_from_the_storage_alone_matches_every_worker(journal_run, tmp_path):
    out, _ = journal_run
    url = f"journal:///{out.resolve() / 'study.journal'}"
    shown = {}
    for args in (("--storage", url), (os.fspath(out / "workers" / "worker-2"),)):
        proc = _cli("leaderboard", *args, "--comparison", cwd=tmp_path)
        shown[args[0]], _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
    assert shown["--storage"] == shown[os.fspath(out / "workers" / "worker-2")]
    assert "finalist" in shown["--storage"]


def test_a_worker_with_another_configuration_is_refused(tmp_path):
    url = f"journal:///{tmp_path / 'study.journal'}"
    identity = {"seed": 0, "budget": {"trials": 5, "finalists": 1}}
    first = OptunaEngine(storage=url)
    first.open(tmp_path, trials=5, seed=0, max_epochs=1)
    first.join(identity)
    running = first.ask()  # the first worker is running a trial
    assert running is not None
    second = OptunaEngine(storage=url)
    second.open(tmp_path, trials=9, seed=0, max_epochs=1)
    with pytest.raises(ConfigError) as info:
        second.join({"seed": 0, "budget": {"trials": 9, "finalists": 1}})
    assert str(info.value) == (
        "`budget.trials` differs from the configuration of study 'attn-search', which other "
        "workers are running: every worker of a study needs the same configuration. Start this "
        "one with the study's options, or give it another --study. Received: budget.trials=9 "
        "(the study's: 5)"
    )
    second.join(identity)  # the same configuration joins


# --- PostgreSQL: a real server, a password, a worker killed mid-trial -------------------------
def _pg_bin() -> pathlib.Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "PostgreSQL is not installed; .ci/run installs it (apt-get install postgresql)"
            )
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return pathlib.Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server; yields the URL of a database with a password."""
    bin_dir = _pg_bin()
    # Not under pytest's folders: they are private to this user, and the server runs as
    # `postgres` when the tests run as root.
    root = pathlib.Path(tempfile.mkdtemp(prefix="attn-search-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run(os.fspath(bin_dir / "initdb"), "-D", os.fspath(data), "-U", "postgres",
        "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
    options = f"-p {port} -k {root} -h 127.0.0.1"
    run(os.fspath(bin_dir / "pg_ctl"), "-D", os.fspath(data), "-o", options, "-l",
        os.fspath(root / "log"), "-w", "start")  # fmt: skip
    try:
        sql = f"CREATE USER attn PASSWORD '{PASSWORD}'; CREATE DATABASE attn OWNER attn;"
        for statement in sql.split("; "):
            run(os.fspath(bin_dir / "psql"), "-h", os.fspath(root), "-p", str(port), "-U",
                "postgres", "-c", statement)  # fmt: skip
        yield f"postgresql://attn:{PASSWORD}@127.0.0.1:{port}/attn"
    finally:
        run(os.fspath(bin_dir / "pg_ctl"), "-D", os.fspath(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_workers_on_postgresql_survive_a_killed_worker_and_keep_the_password(postgres, tmp_path):
    out = tmp_path / "run"
    env = {"ATTN_SEARCH_HEARTBEAT": "1"}
    # 6 one-epoch trials of a second or two each: polled 5 times a second, so that the moment
    # when one trial is done and another still training is not missed.
    proc = _cli("run", *TINY, "--trials", "6", "--workers", "3", "--storage", postgres,
                "--study", "attn-search", "--out", os.fspath(out), env=env)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 400
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            trials = _search_trials(postgres)
        except Exception:  # noqa: BLE001 - the study does not exist yet
            continue
        done = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state.name == "RUNNING" and "plan" in t.user_attrs]
        if done and running:  # mid-search, inside a trial's training
            killed = int(running[0].user_attrs["worker"].rpartition(":")[2])
            os.kill(killed, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert killed is not None, output
    records = _assert_exact(postgres, 6)
    assert any(r.get("interrupted") for r in records)  # the killed trial, re-run elsewhere
    keys = _units(postgres)
    assert len(keys) == len(set(keys)) == 1  # one fit group (1 finalist x 1 seed), done once
    assert proc.returncode == 1 and "stopped with exit code -9" in output
    finished = [
        w for w in sorted((out / "workers").glob("worker-*/"))
        if json.loads((w / "run.json").read_text())["status"] == "complete"
    ]  # fmt: skip
    assert len(finished) == 2
    _same_tables([*finished, out])
    # The password is nowhere: no file of the run folder, no line of the output.
    assert PASSWORD not in output
    for path in out.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert mask_url(postgres) in (out / "config.yaml").read_text()


def test_a_stopped_heartbeat_queues_one_rerun(postgres, monkeypatch, tmp_path):
    # Another machine's worker (no pid to check here) stopped beating: the first worker that
    # looks fails its trial and queues the re-run, once.
    import optuna

    monkeypatch.setenv("ATTN_SEARCH_HEARTBEAT", "1")
    engine = OptunaEngine(storage=postgres, study="heartbeat")
    engine.open(tmp_path, trials=2, seed=0, max_epochs=1, overwrite=True)
    trial = engine.ask()
    beat = engine._slots._heartbeat
    assert isinstance(beat, Heartbeat)
    beat.stop()  # the worker "dies": its heartbeat stops
    engine._slots._heartbeat = None
    trial.trial.set_user_attr("worker", "another-machine:1")
    time.sleep(4.5)  # past the grace period (3 intervals)
    assert engine.others_running()  # noticed: failed, and its re-run queued
    assert engine.others_running()  # a second look queues nothing more
    states = [t.state for t in engine.study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    rerun = engine.ask()
    assert rerun.number == 1 and rerun.slot == 0
    engine.close()


def test_storage_url_from_the_environment_and_drivers(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert storage_url(None) is None and storage_url("sqlite:///a.db") == "sqlite:///a.db"
    monkeypatch.setenv(STORAGE_ENV, "postgresql://u:p@h/db")
    assert storage_url(None) == "postgresql://u:p@h/db"
    assert OptunaEngine().describe()["storage"] == "postgresql://u:p@h/db"
    assert with_driver("postgresql://u:p@h/db") in (
        "postgresql://u:p@h/db",  # psycopg2 installed
        "postgresql+psycopg://u:p@h/db",  # the postgres extra's psycopg 3
    )


def test_a_storage_that_cannot_be_opened_masks_its_password(tmp_path):
    with pytest.raises(ConfigError) as info:
        open_storage("postgresql://attn:hunter2@127.0.0.1:1/none", tmp_path, lambda *_: None)
    assert "hunter2" not in str(info.value)
    assert str(info.value).endswith("Received: storage='postgresql://attn:***@127.0.0.1:1/none'")


# --- KerasTuner: a chief and two workers ------------------------------------------------------
def test_keras_tuner_chief_and_two_workers(tmp_path):
    out = tmp_path / "run"
    args = ("run", "--engine", "keras-tuner", *TINY, "--trials", "2", "--finalists", "0",
            "--out", os.fspath(out), "--quiet")  # fmt: skip
    base = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    chief = _cli(*args, env={**base, "KERASTUNER_TUNER_ID": "chief"})
    time.sleep(2)
    workers = [_cli(*args, env={**base, "KERASTUNER_TUNER_ID": f"w{i}"}) for i in (1, 2)]
    outputs = [p.communicate(timeout=500)[0] for p in (*workers, chief)]
    assert [p.returncode for p in (*workers, chief)] == [0, 0, 0], outputs
    from attn_search.leaderboard import read_leaderboard

    board = read_leaderboard(out)
    assert sorted(board["trial_id"]) == [0, 1]  # one per worker, both in the chief's table
    assert set(board["status"]) <= {"complete", "pruned", "skipped"}


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_TUNER_ID": "w1"},
            "KerasTuner's chief/worker mode needs all of KERASTUNER_TUNER_ID ('chief' for the "
            "chief, any other name for each worker), KERASTUNER_ORACLE_IP and "
            "KERASTUNER_ORACLE_PORT; KERASTUNER_ORACLE_PORT missing or empty. Set the three, or "
            "none for a search in one process. Received: KERASTUNER_TUNER_ID='w1', "
            "KERASTUNER_ORACLE_IP='127.0.0.1'",
        ),
        (
            {
                "KERASTUNER_ORACLE_IP": "h",
                "KERASTUNER_TUNER_ID": "w1",
                "KERASTUNER_ORACLE_PORT": "80a",
            },  # fmt: skip
            "KERASTUNER_ORACLE_PORT must be a port number from 1 to 65535 (the chief's). "
            "Received: KERASTUNER_ORACLE_PORT='80a'",
        ),
    ],
)
def test_keras_tuner_variables_are_checked(env, message, monkeypatch):
    from attn_search.engines.keras_tuner import _distributed_role

    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        _distributed_role()
    assert str(info.value) == message


def test_workers_need_the_optuna_engine():
    from attn_search.runner import run_search

    with pytest.raises(ConfigError) as info:
        run_search(engine="keras-tuner", workers=2, quiet=True)
    assert str(info.value) == (
        "`workers` above 1 needs the Optuna engine (engine='optuna'), whose storage the workers "
        "share; for KerasTuner start a chief and workers with KerasTuner's variables (README: "
        "Scaling out). Received: workers=2, engine='keras-tuner'"
    )


def test_private_trial_id_that_the_heartbeat_needs_is_there(tmp_path):
    # Optuna has no public accessor for a trial's storage id (checked against 5.0).
    import optuna

    study = optuna.create_study()
    assert isinstance(study.ask()._trial_id, int)


def test_the_dashboard_finds_a_local_study_whatever_the_environment_says(tmp_path, monkeypatch):
    import yaml

    from attn_search.dashboard import find_study

    monkeypatch.setenv(STORAGE_ENV, "postgresql://u:p@h/db")
    engine = {"name": "optuna", "storage": OptunaEngine.DEFAULT_STORAGE, "study": "attn-search"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"engine": engine}))
    (tmp_path / "study.db").write_bytes(b"")
    assert find_study(tmp_path).storage == f"sqlite:///{(tmp_path / 'study.db').resolve()}"


# --- Ctrl-C at a terminal: the parent forwards it once to every worker ------------------------
def _processes_naming(path: pathlib.Path) -> list[int]:
    """The live processes whose command line or environment names `path` (the workers get
    the run folder's journal in their environment)."""
    found = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            if os.fspath(path).encode() in text and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _completed(board: pathlib.Path) -> bool:
    import pandas as pd

    try:
        return bool((pd.read_csv(board)["status"] == "complete").any())
    except (OSError, ValueError, KeyError):  # being written
        return False


def test_ctrl_c_at_a_terminal_stops_every_worker_and_writes_the_tables(tmp_path):
    import pandas as pd
    from optuna.trial import TrialState

    out = (tmp_path / "run").resolve()
    args = ("run", *TINY, "--finalists", "0", "--trials", "30", "--workers", "2",
            "--out", os.fspath(out))  # fmt: skip
    proc = _cli(*args, start_new_session=True)  # its own process group, as a terminal's job
    deadline = time.monotonic() + 300
    workers: list[int] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:  # a finished trial
            time.sleep(0.5)
            if any(_completed(b) for b in (out / "workers").glob("worker-*/leaderboard.csv")):
                break
        assert proc.poll() is None, proc.communicate()[0]
        workers = [pid for pid in _processes_naming(out) if pid != proc.pid]
        assert len(workers) == 2  # both workers are running
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at a terminal does
        output, _ = proc.communicate(timeout=120)
    finally:
        for pid in (proc.pid, *workers) if proc.poll() is None else ():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the workers have their own sessions
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert _processes_naming(out) == []
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    url = f"journal:///{out / 'study.journal'}"
    states = [t.state for t in _search_trials(url)]
    assert TrialState.RUNNING not in states
    board = pd.read_csv(out / "leaderboard.csv")
    done = [s for s in states if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 1 <= (board["status"] == "complete").sum() and len(done) < 30
    assert len(board[board["status"].isin(["complete", "pruned"])]) == len(done)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert sorted(w["exit_code"] for w in info["workers"]) == [130, 130]


def test_a_ctrl_c_that_tensorflow_turned_into_a_type_error_still_stops_the_worker(monkeypatch):
    from attn_search.runner import _interrupt

    monkeypatch.setattr(_interrupt, "_received", False)
    previous = signal.getsignal(signal.SIGINT)
    try:
        _interrupt.install()
        _interrupt.raise_if_interrupted(TypeError("a trial's own error"))  # no Ctrl-C: nothing
        with pytest.raises(KeyboardInterrupt):
            try:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)  # the handler raises here
                except KeyboardInterrupt as error:
                    raise TypeError("Failed to convert elements of (None, 64, 1)") from error
            except TypeError as error:  # what `run_trial` catches
                _interrupt.raise_if_interrupted(error)
    finally:
        signal.signal(signal.SIGINT, previous)
