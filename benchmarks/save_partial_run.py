"""Keep the finished models of a long, unfinished reproduction across machines.

    python benchmarks/save_partial_run.py save RUN DEST       # finished models -> DEST
    python benchmarks/save_partial_run.py restore DEST RUN    # DEST -> RUN/models, then resume

A long run (the reference run of issue 32: hours of CPU) may outlive the machine it started
on. ``save`` writes every *finished* model of ``RUN/models`` (iteration = its schedule's) into
``DEST`` as ``deeptree ship`` writes them (float16 weights, metadata and schedule, ``best.pt``
where there is one, the log thinned and gzipped; ``deeptree.evaluation.shipped``) with a ``SHA256SUMS``
file. Unfinished ones are left out (they restart), unless ``--unfinished``: then their whole
resume checkpoint (weights, optimiser and random states) is kept byte for byte, so that the run
continues them. ``restore`` puts them back, where ``deeptree reproduce`` with the run's own
command loads the finished ones (same metadata and schedule), resumes the others and trains
the rest.
NOT package code: a helper script for the run's operator.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import torch  # noqa: E402

from deeptree.checkpoints import BEST_NAME, CHECKPOINT_NAME, load_checkpoint  # noqa: E402
from deeptree.evaluation.shipped import _slim, gzip_log  # noqa: E402

SUMS = "SHA256SUMS"


def save(run: Path, dest: Path, unfinished: bool = False) -> None:
    lines = []
    for checkpoint in sorted((run / "models").glob(f"seed*/*/{CHECKPOINT_NAME}")):
        state = load_checkpoint(checkpoint)
        done = int(state["iteration"]) >= int(state["train_config"]["iterations"])
        progress = f"{state['iteration']} of {state['train_config']['iterations']}"
        if not done and not unfinished:
            print(f"unfinished, left out: {checkpoint.parent.relative_to(run)} ({progress})")
            continue
        name = checkpoint.parent.relative_to(run / "models")
        (dest / name).mkdir(parents=True, exist_ok=True)
        files = [f for f in (CHECKPOINT_NAME, BEST_NAME) if (checkpoint.parent / f).is_file()]
        for file in files:  # best.pt too: the stage-2 option "best" reads it
            if done:
                torch.save(_slim(checkpoint.parent / file, half=True), dest / name / file)
            else:  # the resume state itself, byte for byte
                shutil.copyfile(checkpoint.parent / file, dest / name / file)
        gzip_log(checkpoint.parent / "log.jsonl", dest / name / "log.jsonl.gz")
        for file in (*files, "log.jsonl.gz"):
            digest = hashlib.sha256((dest / name / file).read_bytes()).hexdigest()
            lines.append(f"{digest}  {(name / file).as_posix()}")
        print(f"saved: {name} ({'finished' if done else progress})")
    (dest / SUMS).write_text("\n".join(lines) + "\n")


def restore(dest: Path, run: Path) -> None:
    for line in (dest / SUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        if hashlib.sha256((dest / name).read_bytes()).hexdigest() != digest:
            raise SystemExit(f"{dest / name}: its bytes differ from {SUMS}")
    for checkpoint in sorted(dest.glob(f"seed*/*/{CHECKPOINT_NAME}")):
        target = run / "models" / checkpoint.parent.relative_to(dest)
        if (target / CHECKPOINT_NAME).is_file():
            print(f"kept (already in the run): {target}")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for file in (CHECKPOINT_NAME, BEST_NAME):
            if (checkpoint.parent / file).is_file():
                shutil.copyfile(checkpoint.parent / file, target / file)
        (target / "log.jsonl").write_bytes(gzip.decompress((checkpoint.parent / "log.jsonl.gz").read_bytes()))
        print(f"restored: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument(
        "--unfinished", action="store_true",
        help="save: also the resume checkpoints of models still training",
    )  # fmt: skip
    args = parser.parse_args()
    if args.action == "save":
        save(args.source, args.target, args.unfinished)
    else:
        restore(args.source, args.target)


if __name__ == "__main__":
    main()
