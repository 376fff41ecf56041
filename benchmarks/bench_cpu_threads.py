"""CPU thread policy: a cpu-profile stage-1 training step, idle and under a background load.

    python benchmarks/bench_cpu_threads.py [--rounds 3] [--steps 8] [--load 2] [--record]

Each measurement runs in a fresh Python process, because OpenMP reads its settings once, when
torch loads it. The policies compared (environment of that process):

* ``old``: what the package did before its thread policy (``DEEPTREE_THREAD_POLICY=off``):
  torch's defaults, one OpenMP thread per physical core, waiting threads spin (libgomp);
* ``spin 10k``: ``GOMP_SPINCOUNT=10000``: spin for a short while, then sleep;
* ``one thread``: ``OMP_NUM_THREADS=1``: no thread ever waits for another;
* ``free cores``: ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` = cores minus the rounded
  1-minute load average (at least 1), read when the process starts;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps at once;
* ``new``: nothing set: ``import deeptree`` applies :mod:`deeptree.threads` itself (by the
  1-minute load average at start: ``passive`` on a busy machine, ``spin 10k`` on an idle one;
  torch's default thread count).

Each process builds the cpu profile's stage-1 network (amc+gul, 4 output channels) and times,
on one resident random batch (no data loading):

* ``train``: forward + loss + backward + SGD step, batch 2 x 32^3 (the profile's);
* ``predict``: a no-grad forward of 8 windows of 32^3 (what sliding-window inference does).

Conditions: ``idle`` (nothing else started) and ``loaded`` (``--load`` background processes
started by this script, a minute before the first measurement: ``--load-kind spin``, each
spinning on one core in pure Python, as a browser would; or ``--load-kind torch``, each
training a small 3D CNN with torch's defaults, as a second notebook or a test suite would). The
policies are interleaved round by round so that a drift of the machine's own load hits them all;
the figure of a policy is the median over its rounds of the per-process median step time.

``--record`` adds a section with the figures, the CPU model and the command to
``benchmarks/RESULTS.md``, at the end of its thread-policy sections (above the line
:data:`RECORD_MARKER`; the raw logs of earlier runs are in ``benchmarks/records/cpu_threads/``).

``--command "CMD"`` instead runs one shell command under the same background load (``--load``
busy processes) and prints its wall time and the load averages, e.g. the whole reproduction:
``python benchmarks/bench_cpu_threads.py --load 2 --command "make reproduce PROFILE=cpu"``.

NOT package code: a benchmark script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import cpu_model  # noqa: E402

#: The results record, and the line of it above which ``--record`` puts a new section.
RESULTS = REPO / "benchmarks" / "RESULTS.md"
RECORD_MARKER = "<!-- bench_cpu_threads.py --record inserts its sections above this line -->"

#: Environment changes of each policy (None = remove the variable).
POLICIES: dict[str, dict[str, str]] = {
    "old": {"DEEPTREE_THREAD_POLICY": "off"},
    "spin 10k": {"DEEPTREE_THREAD_POLICY": "off", "GOMP_SPINCOUNT": "10000"},
    "one thread": {"DEEPTREE_THREAD_POLICY": "off", "OMP_NUM_THREADS": "1"},
    "free cores": {"DEEPTREE_THREAD_POLICY": "off", "OMP_WAIT_POLICY": "PASSIVE"},  # + count
    "passive": {"DEEPTREE_THREAD_POLICY": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "new": {},
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT",
                    "DEEPTREE_THREAD_POLICY")


def worker(steps: int) -> dict:
    """Time training and prediction steps in this process (run with ``--worker``)."""
    import deeptree  # noqa: F401, I001  (applies the thread policy before torch loads)
    import torch

    from deeptree.config import get_config
    from deeptree.stage1.losses import Stage1Loss
    from deeptree.networks import stage1_network
    from deeptree.threads import current_policy

    net, tcfg = get_config("cpu").stage1_net, get_config("cpu").stage1_train
    torch.manual_seed(0)
    model, loss_fn = stage1_network(net, "amc+gul"), Stage1Loss("amc+gul")
    optimizer = torch.optim.SGD(model.parameters(), lr=tcfg.learning_rate, momentum=0.99,
                                nesterov=True)
    shape = (tcfg.batch_size, 1, *net.patch_size)
    image = torch.randn(shape)
    label = torch.randint(0, 4, shape)
    distance = torch.rand(shape)

    def train_step() -> None:
        optimizer.zero_grad()
        loss, _ = loss_fn(model(image), label, distance)
        loss.backward()
        optimizer.step()

    windows = torch.randn(8, 1, *net.patch_size)

    def predict_step() -> None:
        with torch.no_grad():
            model(windows)

    timings: dict = {}
    for name, step, train_mode in (("train", train_step, True), ("predict", predict_step, False)):
        model.train(train_mode)
        step()  # warm-up: oneDNN chooses and caches its kernels on the first call
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        timings[name] = statistics.median(times)
    # the weights after the same number of steps: equal across policies only where the policy
    # keeps the floating-point order of the sums (the thread count changes it)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    timings["weights_md5"] = hashlib.md5(weights.tobytes()).hexdigest()
    return {"threads": torch.get_num_threads(), "policy": current_policy().describe(), **timings}


def free_cores() -> int:
    """Cores minus the rounded 1-minute load average, clipped to [1, cores]."""
    cores = len(os.sched_getaffinity(0))
    return int(min(cores, max(1, cores - round(os.getloadavg()[0]))))


def run_worker(policy: str, steps: int) -> dict:
    """One fresh process with ``policy``'s environment; its timings as a dict."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(POLICIES[policy])
    if policy == "free cores":
        env["OMP_NUM_THREADS"] = str(free_cores())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spin() -> None:
    while True:
        pass


#: A background torch job, as another notebook or test suite would run it: torch's defaults
#: (no deeptree, so no thread policy), a small 3D convolution network trained in a loop.
TORCH_JOB = """
import torch
net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv3d(8, 8, 3, padding=1))
x = torch.randn(2, 1, 24, 24, 24)
opt = torch.optim.SGD(net.parameters(), lr=1e-3)
while True:
    opt.zero_grad(); net(x).square().mean().backward(); opt.step()
"""


LOAD_KINDS = {"spin": "pure-Python busy loops",
              "torch": "small 3D CNN trainings with torch's default threads and wait policy"}


def start_load(n: int, kind: str = "spin") -> list:
    """Start ``n`` background processes until :func:`stop_load`.

    ``kind="spin"``: each spins on one core (a pure-Python busy loop, always runnable);
    ``kind="torch"``: each trains a small 3D CNN with torch's default threads and wait policy
    (what a second notebook or a test suite on the same machine does).
    """
    if kind == "torch":
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        return [subprocess.Popen([sys.executable, "-c", TORCH_JOB], env=env,
                                 stdout=subprocess.DEVNULL) for _ in range(n)]
    busy = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in busy:
        p.start()
    return busy


def stop_load(busy: list) -> None:
    for p in busy:
        p.terminate()
        if isinstance(p, subprocess.Popen):
            p.wait()
        else:
            p.join()


def run_command_under_load(command: str, load: int, record: bool = False,
                           kind: str = "spin") -> int:
    """Run ``command`` in a shell beside ``load`` busy processes; print time and load
    (and with ``record`` add them to ``benchmarks/RESULTS.md``)."""
    before = os.getloadavg()
    busy = start_load(load, kind)
    start = time.perf_counter()
    try:
        status = subprocess.run(command, shell=True).returncode
    finally:
        seconds = time.perf_counter() - start
        after = os.getloadavg()
        stop_load(busy)
    figures = {
        "command": command, "busy_processes": load, "exit_status": status,
        "seconds": round(seconds, 1), "minutes": round(seconds / 60, 1),
        "load_before": [round(x, 2) for x in before], "load_at_end": [round(x, 2) for x in after],
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(figures, indent=2))
    if record:
        append_results(
            f"#### `{command}` beside {load} busy processes ({figures['date']})\n\n"
            f"`python benchmarks/bench_cpu_threads.py --load {load} --command \"{command}\" "
            f"--record`, in a fresh clone, on {figures['cpu_model']} ({figures['cores']} cores): "
            f"**{figures['minutes']} min** wall time, exit status {status}; load average "
            f"(1/5/15 min) {' / '.join(map(str, figures['load_before']))} before, "
            f"{' / '.join(map(str, figures['load_at_end']))} at the end.\n"
        )
    return status


def append_results(text: str, path: Path = RESULTS) -> None:
    """Insert ``text`` (a Markdown section) into ``path`` just above :data:`RECORD_MARKER`.

    RESULTS.md is grouped by topic, so a new run goes to the end of the thread-policy sections,
    not to the end of the file. Written to a temporary name and renamed (a benchmark script
    must not import ``deeptree``: its thread policy would change the environment of the
    processes measured after it).
    """
    old = path.read_text(encoding="utf-8")
    if old.count(RECORD_MARKER) != 1:
        raise SystemExit(f"{path}: expected the line {RECORD_MARKER!r} once, where --record "
                         f"puts its section; found it {old.count(RECORD_MARKER)} times")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(old.replace(RECORD_MARKER, text.rstrip("\n") + "\n\n" + RECORD_MARKER),
                   encoding="utf-8")
    os.replace(tmp, path)


def measure(condition: str, rounds: int, steps: int, load: int, kind: str = "spin") -> dict:
    """Every policy, ``rounds`` times interleaved, under ``condition`` (idle / loaded)."""
    busy = start_load(load, kind)
    # let the 1-minute load average see the background jobs: `new` decides from it at start
    time.sleep(60 if load else 0)
    try:
        samples: dict[str, list[dict]] = {name: [] for name in POLICIES}
        for r in range(rounds):
            for name in POLICIES:
                samples[name].append(run_worker(name, steps))
                s = samples[name][-1]
                print(f"  {condition:6s} round {r + 1}/{rounds} {name:10s} threads {s['threads']}"
                      f"  train {s['train']:.3f} s  predict {s['predict']:.3f} s", flush=True)
    finally:
        stop_load(busy)
    return {
        name: {
            "threads": "/".join(sorted({str(r["threads"]) for r in runs})),
            "policy": runs[0]["policy"],
            "train_s": statistics.median(r["train"] for r in runs),
            "predict_s": statistics.median(r["predict"] for r in runs),
            "same_weights_as_old": "yes" if all(
                r["weights_md5"] == o["weights_md5"] for r, o in zip(runs, samples["old"], strict=True)
            ) else "no",
        }
        for name, runs in samples.items()
    }


def results_from_log(path: str) -> dict:
    """The figures of a run's printed log (the per-process lines), e.g. of a run that was
    stopped before its end: medians over the rounds that completed, per condition and policy.
    The weights' checksums are not in the log, so ``same_weights_as_old`` is ``n/a``."""
    import re

    line = re.compile(r"^\s*(idle|loaded)\s+round (\d+)/\d+ (.+?)\s+threads (\d+)\s+train "
                      r"([0-9.]+) s\s+predict ([0-9.]+) s")
    runs: dict[str, dict[str, list]] = {}
    for text in Path(path).read_text().splitlines():
        m = line.match(text)
        if m:
            condition, _, policy, threads, train, predict = m.groups()
            runs.setdefault(condition, {}).setdefault(policy.strip(), []).append(
                (threads, float(train), float(predict)))
    results: dict = {"load_before": "see the log", "cpu_model": cpu_model(), "cores": os.cpu_count()}
    for condition, policies in runs.items():
        results[condition] = {
            name: {"threads": "/".join(sorted({t for t, _, _ in rows})),
                   "policy": "(from the log)",
                   "train_s": statistics.median(r[1] for r in rows),
                   "predict_s": statistics.median(r[2] for r in rows),
                   "rounds": len(rows), "same_weights_as_old": "n/a"}
            for name, rows in policies.items()
        }
    return results


def verdict(results: dict) -> list[str]:
    """Issue 16's two bars, read from the figures: loaded, the new policy's training step at
    least 5x as fast as the old one's; idle, at most 10% slower."""
    lines = []
    if {"old", "new"} <= set(results.get("loaded", {})):
        r = results["loaded"]
        lines.append(f"Loaded: the new policy's training step is {r['old']['train_s'] / r['new']['train_s']:.2f}x "
                     "as fast as the old one's (issue 16's bar: at least 5x).  ")
    if {"old", "new"} <= set(results.get("idle", {})):
        r = results["idle"]
        change = r["new"]["train_s"] / r["old"]["train_s"] - 1
        lines.append(f"Idle: the new policy's training step changes by {change:+.0%} against the old "
                     "one's (bar: at most +10%).  ")
    return lines


def markdown(results: dict, args: argparse.Namespace) -> str:
    """The RESULTS.md section of one run."""
    rows = []
    for condition in ("idle", "loaded"):
        if condition not in results:
            continue
        old = results[condition]["old"]
        for name, r in results[condition].items():
            rows.append(
                f"| {condition} | {name} | {r['threads']} | {r['train_s']:.3f} | "
                f"{old['train_s'] / r['train_s']:.2f}x | {r['predict_s']:.3f} | "
                f"{old['predict_s'] / r['predict_s']:.2f}x | {r['same_weights_as_old']} |"
            )
    return "\n".join([
        f"#### CPU thread policy ({time.strftime('%Y-%m-%d')}, `bench_cpu_threads.py`)",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average before the run {results['load_before']}. Command: "
        f"`.venv/bin/python benchmarks/bench_cpu_threads.py --rounds {args.rounds} "
        f"--steps {args.steps} --load {args.load} --load-kind {args.load_kind} "
        f"--conditions {args.conditions} --record`. `loaded` = {args.load} background "
        f"processes started by the script ({LOAD_KINDS[args.load_kind]}). Medians over the rounds of the per-process median "
        "step time; speed-up = old time / this time.",
        "",
        *[f"New policy in a fresh process, {c}: {results[c]['new']['policy']}.  "
          for c in ("idle", "loaded") if "new" in results.get(c, {})],
        "",
        *verdict(results),
        "",
        "| condition | policy | torch threads | train step (s) | speed-up | "
        "predict 8 windows (s) | speed-up | same weights as old |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--load", type=int, default=2, help="busy processes for 'loaded'")
    parser.add_argument("--load-kind", choices=("spin", "torch"), default="spin",
                        help="background processes: pure-Python spinners, or torch trainings")
    parser.add_argument("--conditions", default="idle,loaded",
                        help="comma-separated subset of idle,loaded")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--record", action="store_true", help="add to benchmarks/RESULTS.md")
    parser.add_argument("--command", help="run this shell command under --load busy processes")
    parser.add_argument("--summarize", metavar="LOG",
                        help="print (with --record: append) the figures of a saved run log")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command:
        return run_command_under_load(args.command, args.load, args.record, args.load_kind)
    if args.worker:
        print(json.dumps(worker(args.steps)))
        return 0
    if args.summarize:
        text = markdown(results_from_log(args.summarize), args).replace(
            "`.venv/bin/python benchmarks/bench_cpu_threads.py",
            f"log `{args.summarize}` of `.venv/bin/python benchmarks/bench_cpu_threads.py", 1)
        print(text)
        if args.record:
            append_results(text)
        return 0
    results = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
               "cpu_model": cpu_model(), "cores": os.cpu_count()}
    for condition in args.conditions.split(","):
        load = {"idle": 0, "loaded": args.load}[condition]
        results[condition] = measure(condition, args.rounds, args.steps, load, args.load_kind)
    text = markdown(results, args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.record:
        append_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
