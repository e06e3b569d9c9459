"""Unit tests of the launchers against a stand-in `graze` command (a small script that logs
its arguments and answers like the real one); tests/tests/ipyparallel.rs runs the real thing."""

import asyncio
import json
import os
import stat
import sys
import textwrap

import pytest

from graze_ipyparallel import engine, launcher
from graze_ipyparallel.launcher import GrazeControllerLauncher, GrazeEngineSetLauncher

FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    d = os.environ["FAKE_GRAZE_DIR"]
    args = sys.argv[1:]
    with open(os.path.join(d, "calls.jsonl"), "a") as f:
        f.write(json.dumps(args) + "\\n")
    if "--access" in args:
        i = args.index("--access"); del args[i:i + 2]
    state = os.path.join(d, "state")
    cmd = args[0]
    if cmd == "submit":
        open(state, "w").write("running")
        print("42")
    elif cmd == "show":
        s = open(state).read().strip()
        print(json.dumps({{"id": 42, "state": s, "exit": {{"code": 0}} if s == "completed" else None}}))
    elif cmd == "cancel":
        open(state, "w").write("cancelled")
    elif cmd == "requeue":
        open(state, "w").write("queued")
    elif cmd == "nodes":
        print(json.dumps([{{"info": {{"name": "a", "policy": {{"vacate_after_ms": 120000, "vacate_grace_ms": 10000}}}}}}]))
    else:
        sys.exit(2)
    """
)


@pytest.fixture
def fake_graze(tmp_path, monkeypatch):
    exe = tmp_path / "graze"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_GRAZE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAZE_ACCESS", raising=False)

    def calls():
        p = tmp_path / "calls.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def set_state(s):
        (tmp_path / "state").write_text(s)

    return str(exe), calls, set_state


def make(tmp_path, graze, **kw):
    (tmp_path / "profile" / "security").mkdir(parents=True, exist_ok=True)
    la = GrazeEngineSetLauncher(
        work_dir=str(tmp_path), profile_dir=str(tmp_path / "profile"), cluster_id="c1",
        graze_cmd=[graze], poll_interval=0.05, **kw,
    )
    la.environment["IPP_CONNECTION_INFO"] = json.dumps({"location": "10.0.0.1", "key": "k"})
    return la


def test_submit_command_carries_options_and_connection_info(tmp_path, fake_graze):
    graze, calls, _ = fake_graze
    la = make(tmp_path, graze, groups=["lab", "fast"], nodes=["a2"], priority=5, access="/x.toml")
    cmd = la.submit_args(8, "SCRIPT")
    assert cmd[:3] == [graze, "--access", "/x.toml"]
    assert cmd[3:7] == ["submit", "--parsable", "-n", "8"]
    assert "--group" in cmd and cmd[cmd.index("--group") + 1] == "lab,fast"
    assert cmd[cmd.index("--nodes") + 1] == "a2"
    assert cmd[cmd.index("--priority") + 1] == "5"
    envs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--env"]
    assert 'IPP_CONNECTION_INFO={"location": "10.0.0.1", "key": "k"}' in envs
    assert not any(e.startswith("IPP_PROFILE_DIR=") for e in envs)
    assert cmd[-4:] == ["--", "sh", "-c", "SCRIPT"]


def test_access_defaults_to_the_environment(tmp_path, fake_graze, monkeypatch):
    graze, _, _ = fake_graze
    monkeypatch.setenv("GRAZE_ACCESS", "/env.toml")
    la = make(tmp_path, graze)
    assert la.graze("queue") == [graze, "--access", "/env.toml", "queue"]


def test_connection_file_is_read_when_the_env_is_missing(tmp_path, fake_graze):
    graze, _, _ = fake_graze
    la = make(tmp_path, graze)
    del la.environment["IPP_CONNECTION_INFO"]
    path = la.connection_files["engine"]
    with open(path, "w") as f:
        json.dump({"location": "h"}, f)
    assert json.loads(la.engine_env()["IPP_CONNECTION_INFO"]) == {"location": "h"}
    os.remove(path)
    with pytest.raises(launcher.LauncherError, match="no controller connection info"):
        la.engine_env()


def test_script_runs_mpiexec_over_the_engine_wrapper(tmp_path, fake_graze):
    graze, _, _ = fake_graze
    la = make(tmp_path, graze)
    la.write_batch_script(4)
    script = open(la.batch_file).read()
    assert "GRAZE_RANK_NODES=$(paste -sd, \"$GRAZE_NODEFILE\")" in script
    assert f"exec mpiexec {sys.executable} -m graze_ipyparallel.engine" in script


def test_start_poll_and_stop(tmp_path, fake_graze):
    graze, calls, set_state = fake_graze

    async def run():
        la = make(tmp_path, graze)
        stopped = []
        assert la.start(3) == "42"
        la.on_stop(stopped.append)
        assert la.running and la.poll() is None
        set_state("completed")
        for _ in range(100):
            if stopped:
                break
            await asyncio.sleep(0.05)
        assert stopped and stopped[0]["state"] == "completed" and stopped[0]["exit_code"] == 0
        assert la.poll() == 0

        la2 = make(tmp_path, graze)
        la2.start(2)
        data = la2.stop()
        assert data["state"] == "cancelled"
        assert ["cancel", "42"] in calls()

    asyncio.run(run())


def test_from_dict_refuses_an_ended_job(tmp_path, fake_graze):
    graze, _, set_state = fake_graze
    la = make(tmp_path, graze)
    la.job_id = "42"
    d = la.to_dict()
    set_state("cancelled")
    with pytest.raises(launcher.NotRunning):
        GrazeEngineSetLauncher.from_dict(d, profile_dir=str(tmp_path))


def test_requeue_after_a_suspension_only_when_asked(tmp_path, fake_graze):
    graze, calls, set_state = fake_graze
    set_state("suspended")
    wait = make(tmp_path, graze)
    wait.job_id = "42"
    assert wait.on_state("suspended", 0.0) is None
    assert wait.on_state("suspended", 1000.0) is None
    rq = make(tmp_path, graze, on_owner="requeue", requeue_after=5)
    rq.job_id = "42"
    assert rq.on_state("suspended", 100.0) is None
    assert rq.on_state("suspended", 104.0) is None
    assert rq.on_state("running", 104.5) is None  # resumed: the clock starts again
    assert rq.on_state("suspended", 106.0) is None
    assert rq.on_state("suspended", 111.0) == "requeued"
    assert ["requeue", "42"] in calls()


def test_tolerance_and_misses():
    nodes = [
        {"info": {"policy": {"vacate_after_ms": 600_000, "vacate_grace_ms": 10_000}}},
        {"info": {"policy": {"vacate_after_ms": 60_000, "vacate_grace_ms": 5_000}}},
    ]
    assert launcher.owner_tolerance_s(nodes) == 670.0
    assert launcher.owner_tolerance_s([]) == launcher.DEFAULT_TOLERANCE_S
    assert launcher.heartbeat_misses(670.0) == 224
    assert launcher.heartbeat_misses(1.0) == 10


def test_controller_args(tmp_path, fake_graze):
    graze, _, _ = fake_graze
    c = GrazeControllerLauncher(profile_dir=str(tmp_path), graze_cmd=[graze])
    args = c.find_args()
    # the fake's node: vacate_after 120 s + grace 10 s + 60 s margin = 190 s = 64 beats of 3 s
    assert "--HeartMonitor.max_heartmonitor_misses=64" in args
    assert "--ip=*" in args
    c2 = GrazeControllerLauncher(
        profile_dir=str(tmp_path), graze_cmd=[graze], heartbeat_tolerance=30,
        controller_args=["--ip=10.1.2.3"],
    )
    args2 = c2.find_args()
    assert "--HeartMonitor.max_heartmonitor_misses=10" in args2
    assert "--ip=*" not in args2 and "--ip=10.1.2.3" in args2


def test_job_state_and_exit_code():
    assert launcher.job_state({"state": "Running"}) == "running"
    assert launcher.exit_code({"state": "failed", "exit": {"code": 3}}) == 3
    assert launcher.exit_code({"state": "cancelled", "exit": None}) == 1
    assert launcher.exit_code({"state": "completed"}) == 0


def test_engine_wrapper_sets_node_and_ipythondir():
    env = {"GRAZE_RANK_NODES": "a2,a2,a3,a3", "PMI_RANK": "2"}
    engine.prepare(env)
    assert env["GRAZE_NODE"] == "a3"
    assert os.path.isdir(env["IPYTHONDIR"])
    env2 = {"GRAZE_RANK_NODES": "a2", "PMI_RANK": "7", "IPYTHONDIR": "/keep"}
    engine.prepare(env2)
    assert "GRAZE_NODE" not in env2 and env2["IPYTHONDIR"] == "/keep"


def test_entry_points_are_registered():
    from ipyparallel.cluster.launcher import find_launcher_class

    assert find_launcher_class("graze", "engine") is GrazeEngineSetLauncher
    assert find_launcher_class("graze", "controller") is GrazeControllerLauncher


def test_engines_command_line():
    from graze_ipyparallel import engines as eng

    a = eng.parse(["-n", "4", "--profile-dir", "/p", "--group", "lab", "--nodes", "a1",
                   "--nodes", "a2", "--priority=-3", "--on-owner", "requeue"])
    assert (a.n, a.profile_dir, a.cluster_id) == (4, "/p", "graze")
    assert a.group == ["lab"] and a.nodes == ["a1", "a2"]
    assert a.priority == -3 and a.on_owner == "requeue"
    with pytest.raises(SystemExit):
        eng.parse(["-n", "0", "--profile-dir", "/p"])
    with pytest.raises(SystemExit):
        eng.parse(["-n", "2", "--profile-dir", "/p", "--on-owner", "later"])


def test_loopback_controller_is_noticed():
    assert launcher.loopback_only('{"interface": "tcp://127.0.0.1"}')
    assert not launcher.loopback_only('{"interface": "tcp://*"}')
    assert not launcher.loopback_only('{"interface": "tcp://10.0.0.5"}')
    assert not launcher.loopback_only("not json")
