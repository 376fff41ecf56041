"""The CPU thread policy (deeptree/threads.py): in place in a process started by the
``deeptree`` command and in a notebook kernel started by the runner; an explicit user setting
is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nbformat
import pytest

import deeptree
from deeptree import threads
from deeptree.notebooks import run_notebooks

REPO = Path(deeptree.__file__).resolve().parent.parent
THREAD_VARIABLES = (*threads.USER_VARIABLES, threads.OPT_OUT_VARIABLE, threads.INHERITED_VARIABLE,
                    "OMP_DISPLAY_ENV")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any thread variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


# --- the decision, on plain dicts -----------------------------------------------------------
def test_busy_machine_gets_passive_waiting_before_torch_loads():
    env: dict[str, str] = {}
    policy = threads.decide_policy(env, torch_loaded=False, load=2.5)
    assert policy.set_variables == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {}  # deciding changes nothing
    assert "OMP_WAIT_POLICY=PASSIVE" in policy.describe() and "busy: 2.5 other tasks running" in policy.reason


@pytest.mark.parametrize("load", [0.0, 0.99])
def test_idle_machine_gets_a_short_spin(load):
    policy = threads.decide_policy({}, torch_loaded=False, load=load)
    assert policy.set_variables == {"GOMP_SPINCOUNT": "10000"}
    assert "machine idle" in policy.reason


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux's running-task count")
def test_a_running_job_makes_the_machine_busy():
    # two busy processes (as another job would be): at least one other task wants a CPU now
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        load = threads.machine_load()
        policy = threads.decide_policy({}, torch_loaded=False, load=load)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert load >= 1
    assert policy.set_variables == threads.PASSIVE


def test_unknown_load_counts_as_idle(monkeypatch):
    monkeypatch.setattr(threads, "machine_load", lambda: None)
    policy = threads.decide_policy({}, torch_loaded=False)
    assert policy.set_variables == {"GOMP_SPINCOUNT": "10000"} and "load unknown" in policy.reason


@pytest.mark.parametrize(("mode", "expected"), [("passive", {"OMP_WAIT_POLICY": "PASSIVE"}),
                                                ("SPIN", {"GOMP_SPINCOUNT": "10000"})])
def test_mode_can_be_forced(mode, expected):
    for load in (0.0, 9.0):
        env = {threads.OPT_OUT_VARIABLE: mode}
        assert threads.decide_policy(env, torch_loaded=False, load=load).set_variables == expected


def test_mistyped_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="DEEPTREE_THREAD_POLICY='pasive': use auto"):
        threads.decide_policy({threads.OPT_OUT_VARIABLE: "pasive"}, torch_loaded=False)


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}])
def test_policy_keeps_the_users_wait_setting(user):
    for load in (0.0, 9.0):
        policy = threads.decide_policy(dict(user), torch_loaded=False, load=load)
        assert policy.set_variables == {}
        assert policy.user_variables == user
        assert "(yours)" in policy.describe()


def test_policy_never_touches_the_thread_count():
    for load, expected in ((9.0, threads.PASSIVE), (0.0, threads.SHORT_SPIN)):
        policy = threads.decide_policy({"OMP_NUM_THREADS": "3"}, torch_loaded=False, load=load)
        assert policy.set_variables == expected
        assert policy.user_variables == {"OMP_NUM_THREADS": "3"}


@pytest.mark.parametrize("word", ["off", "OFF", "0", "no", "false"])
def test_policy_can_be_switched_off(word):
    policy = threads.decide_policy({threads.OPT_OUT_VARIABLE: word}, torch_loaded=False)
    assert policy.set_variables == {} and policy.reason.startswith("off")


def test_child_processes_inherit_the_decision_as_deeptrees_not_the_users():
    env: dict[str, str] = {"OMP_NUM_THREADS": "2"}
    parent = threads.apply_to_child_processes(env)
    assert set(parent.set_variables) <= set(env)
    # a child started from there decides nothing new, whatever the load is by then
    child = threads.decide_policy(dict(env), torch_loaded=False, load=0.0 if
                                  "OMP_WAIT_POLICY" in env else 9.0)
    assert child.set_variables == {}
    assert child.user_variables == {"OMP_NUM_THREADS": "2"}
    assert "inherited from the parent process" in child.reason
    # a value the user changed since is the user's again
    changed = {**env, **{k: "7" for k in parent.set_variables}}
    assert threads.decide_policy(changed, torch_loaded=False).reason == "the user's setting kept"


def test_apply_to_child_processes_respects_the_user():
    user = {"OMP_WAIT_POLICY": "ACTIVE"}
    threads.apply_to_child_processes(user)
    assert user == {"OMP_WAIT_POLICY": "ACTIVE"}
    off = {threads.OPT_OUT_VARIABLE: "off"}
    threads.apply_to_child_processes(off)
    assert off == {threads.OPT_OUT_VARIABLE: "off"}


# --- real processes ---------------------------------------------------------------------------
def openmp_report(stderr: str) -> dict[str, str]:
    """The variables GNU libgomp prints at start-up under ``OMP_DISPLAY_ENV=VERBOSE``."""
    report = {}
    for line in stderr.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key.isupper():
            report[key] = value.strip("'")
    return report


def run_deeptree_info(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeptree", "info", "--profile", "smoke"],
                          env=env, capture_output=True, text=True, timeout=300, check=True)


@pytest.mark.parametrize(("mode", "line", "spincount"), [
    ("passive", "OMP_WAIT_POLICY=PASSIVE; applied before torch loaded", "0"),
    ("spin", "GOMP_SPINCOUNT=10000; applied before torch loaded", "10000"),
])
def test_deeptree_command_starts_torch_with_the_policy(mode, line, spincount):
    out = run_deeptree_info(clean_environment(OMP_DISPLAY_ENV="VERBOSE",
                                              **{threads.OPT_OUT_VARIABLE: mode}))
    assert line in out.stdout
    runtime = openmp_report(out.stderr)
    if not runtime:
        pytest.skip("this torch build's OpenMP runtime prints no OMP_DISPLAY_ENV report")
    # what the OpenMP runtime itself read when torch loaded it: how long a waiting thread spins
    assert runtime["GOMP_SPINCOUNT"] == spincount


def test_deeptree_command_decides_by_the_load_and_says_so():
    out = run_deeptree_info(clean_environment(OMP_DISPLAY_ENV="VERBOSE"))
    busy = "OMP_WAIT_POLICY=PASSIVE; applied before torch loaded (machine busy: " in out.stdout
    idle = "GOMP_SPINCOUNT=10000; applied before torch loaded (machine idle: " in out.stdout
    assert busy != idle, out.stdout
    runtime = openmp_report(out.stderr)
    if runtime:
        assert runtime["GOMP_SPINCOUNT"] == ("0" if busy else "10000")


def test_deeptree_command_leaves_the_users_setting_alone():
    out = run_deeptree_info(clean_environment(OMP_DISPLAY_ENV="VERBOSE", OMP_WAIT_POLICY="ACTIVE",
                                              OMP_NUM_THREADS="1"))
    assert "cpu threads: 1 (OMP_WAIT_POLICY=ACTIVE (yours), OMP_NUM_THREADS=1 (yours)" in out.stdout
    runtime = openmp_report(out.stderr)
    if runtime:
        assert runtime["OMP_WAIT_POLICY"] == "ACTIVE" and runtime["GOMP_SPINCOUNT"] != "0"


def test_deeptree_command_can_switch_the_policy_off():
    out = run_deeptree_info(clean_environment(**{threads.OPT_OUT_VARIABLE: "off"}))
    assert "cpu threads: " in out.stdout and "off (DEEPTREE_THREAD_POLICY)" in out.stdout
    assert "PASSIVE" not in out.stdout and "GOMP_SPINCOUNT" not in out.stdout


def test_torch_imported_first_gets_a_warning_and_no_change():
    code = ("import warnings, os\nwarnings.simplefilter('always')\nimport torch\n"
            "torch.set_num_threads(2)\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n    import deeptree\n"
            "print(torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), "
            "[x.category.__name__ for x in w])")
    out = subprocess.run([sys.executable, "-c", code], env=clean_environment(),
                         capture_output=True, text=True, timeout=300, check=True)
    # the user's torch.set_num_threads stays, nothing is set, and the warning says why
    assert out.stdout.split() == ["2", "None", "['ThreadPolicyWarning']"]


def test_runner_kernel_has_the_policy_and_keeps_the_users_setting(tmp_path, monkeypatch):
    # A notebook that imports torch first, as a user's might, and reports what its kernel
    # process started with (/proc/self/environ: what the OpenMP runtime read when it loaded).
    code = (
        "import json, os, warnings\nimport torch\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n    import deeptree\n"
        "start = dict(x.split('=', 1) for x in open('/proc/self/environ').read().split('\\0') if '=' in x)\n"
        "report = {'start': start.get('OMP_WAIT_POLICY'), 'spin': start.get('GOMP_SPINCOUNT'),\n"
        "          'threads': torch.get_num_threads(),\n"
        "          'warnings': [w.category.__name__ for w in caught]}\n"
        "open(os.path.join(run_dir, 'threads.json'), 'w').write(json.dumps(report))"
    )
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    parameters = nbformat.v4.new_code_cell('profile = "cpu"\nrun_dir = None')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(code)]
    notebook = tmp_path / "nb" / "00_threads.ipynb"
    notebook.parent.mkdir()
    nbformat.write(nb, notebook)

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = run_notebooks("smoke", tmp_path / "default", [notebook])
    assert runs[0].ok, runs[0].error
    report = json.loads((tmp_path / "default" / "threads.json").read_text())
    assert (report["start"], report["spin"]) in {("PASSIVE", None), (None, "10000")}
    assert report["warnings"] == []

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = run_notebooks("smoke", tmp_path / "user", [notebook])
    assert runs[0].ok, runs[0].error
    report = json.loads((tmp_path / "user" / "threads.json").read_text())
    assert report == {"start": "ACTIVE", "spin": None, "threads": 1, "warnings": []}


def test_cpu_description_names_the_vector_extension(tmp_path):
    """Run summaries say which CPU class ran them (AVX-512 and AVX2 runs differ in time and
    in their figures)."""
    from deeptree.threads import cpu_description

    def info(flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(
            f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
        )
        return path

    assert cpu_description(info("fpu sse2 avx avx2 avx512f avx512bw")) == "AMD EPYC, AVX-512"
    assert cpu_description(info("fpu sse2 avx avx2")) == "AMD EPYC, AVX2 (no AVX-512)"
    assert cpu_description(info("fpu sse2")) == "AMD EPYC"
    assert cpu_description(tmp_path / "missing") == "unknown CPU"
    assert cpu_description()  # this machine: a non-empty description
