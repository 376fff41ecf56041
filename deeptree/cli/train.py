"""``deeptree train``: train the stage-1 or the stage-2 network on an ATM'22-layout dataset.

Example::

    deeptree train --stage 1 --profile cpu --variant amc+gul --data data/cohort --out runs/s1
    deeptree train --stage 1 --profile cpu --variant amc+gul --data data/cohort --out runs/s1 --resume
    deeptree train --stage 2 --profile cpu --data data/cohort --out runs/s2

The last ``--val`` cases (by id) are held out for validation (BD, TLD, precision logged every
``validate_every`` iterations; stage 2: the gap repair rate). Stage-1 arrays are cached in
``<data>/.cache_stage1`` (or ``--cache``); when the dataset folder cannot be written (a
read-only dataset), in the user cache folder (``$XDG_CACHE_HOME/deeptree``, by default
``~/.cache/deeptree``), else under ``--out``, with a notice. The run folder is locked while
the command runs (a second ``deeptree train`` into it is refused; under ``torchrun`` rank 0
holds the lock), and the temporary files of a killed run are removed. Ctrl-C writes a
checkpoint; ``--resume`` continues exactly where it stopped. A ``--out`` that already holds a run (``last.pt`` or ``log.jsonl``)
is refused unless ``--resume`` (continue it) or ``--overwrite`` (start again: its checkpoint,
log and ``best.pt`` are replaced) is given; one holding the other stage's checkpoint is
always refused. The device and the options are checked before the data are prepared:
``--resume`` compares the options that define the run (the dataset's resolved path and case
ids, the validation cases, profile, variant, iterations, batch size, seed; recorded in every
checkpoint as ``meta["run"]``, :func:`run_record`) with the checkpoint's and refuses another
run's with one line naming the option and both values; ``--val`` must leave a case to train on.

Several GPUs or nodes: the same command under ``torchrun`` (``deeptree.distributed``)::

    torchrun --standalone --nproc_per_node 2 -m deeptree train --stage 1 --profile gpu \
        --data /data/ATM22 --out runs/s1 --resume

Each rank trains on its share of the profile's batch (which must be a multiple of the process
count), rank 0 writes the run folder and validates; the ranks prepare the stage-1 cache
together (case ``i`` on rank ``i mod N``) before training.
"""

from __future__ import annotations

import sys

from deeptree.cli._cases import locked_output, warn_thick_inputs
from deeptree.config import check_variant, get_config, stage2_settings
from deeptree.io import InputError, list_cases

NAME = "train"
HELP = "train stage 1 (anatomy-aware classes + General Union Loss) or stage 2 (breakage connection)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--stage", type=int, choices=(1, 2), default=1, help="1: stage-1 network; 2: stage-2 breakage connection"
    )
    parser.add_argument("--profile", default="cpu", help="run profile: smoke, cpu or gpu")
    parser.add_argument(
        "--variant",
        default="amc+gul",
        help="stage-1 loss: plain, amc, gul or amc+gul (paper Table 2)",
    )
    parser.add_argument("--data", required=True, help="dataset folder (imagesTr/ + labelsTr/)")
    parser.add_argument("--out", required=True, help="run folder (checkpoint, log, loss curves)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --out that holds one (its last.pt, log and best.pt are replaced)",
    )
    parser.add_argument("--iterations", type=int, help="override the profile's iteration count")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    parser.add_argument(
        "--val", type=int, help="cases held out for validation (default: the profile's)"
    )
    parser.add_argument("--cache", help="folder for prepared arrays (default <data>/.cache_stage1)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--workers",
        type=int,
        help="DataLoader worker processes per training process (default: 0 on a CPU; on a GPU "
        "the CPUs available shared by the processes of this node, minus one each, at most 12)",
    )
    parser.add_argument("--seed", type=int, help="override the profile's seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import contextlib

    from deeptree import distributed

    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite: give one of them, not both")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers {args.workers}: must be 0 (load in this process) or more")
    # under torchrun: join the process group (NCCL on GPUs, gloo on CPUs); refuse an unusable
    # device before the data are prepared
    env, device = distributed.init_from_env(args.device)
    try:
        # the lock of --out, taken by rank 0 once the options are checked
        with contextlib.ExitStack() as held:
            return _run(args, env, device, held)
    finally:
        distributed.shutdown()


def _run(args, env, device, held) -> int:
    from dataclasses import replace
    from pathlib import Path

    from deeptree import distributed
    from deeptree.stage1.data import split_cases
    from deeptree.train import train

    out, data = Path(args.out), Path(args.data)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out is a file; the run needs a folder")
    if out.resolve() in (data.resolve(), (data / "imagesTr").resolve(), (data / "labelsTr").resolve()):
        raise InputError(f"{out}: --out is the dataset folder (--data); give the run its own folder")
    saved = _refuse_another_stage(out / "last.pt", args.stage)
    _refuse_existing_run(out, args.resume, args.overwrite)
    if env.is_main:
        held.enter_context(locked_output(out, NAME))
    if (
        env.is_main
        and args.resume
        and not (out / "last.pt").is_file()
        and not (out / "log.jsonl").is_file()
    ):
        print(f"deeptree train: no checkpoint in {out}; --resume starts from scratch", file=sys.stderr)
    cfg = get_config(args.profile)
    if args.stage == 2:
        net, train_cfg, data_cfg = stage2_settings(args.profile)
    else:
        check_variant(args.variant)
        net, train_cfg = cfg.stage1_net, cfg.stage1_train
    overrides = {
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "val_cases": args.val,
        "seed": args.seed,
    }
    train_cfg = replace(train_cfg, **{k: v for k, v in overrides.items() if v is not None})
    if train_cfg.iterations < 1 or train_cfg.batch_size < 1:
        raise InputError("--iterations and --batch-size must be at least 1")
    distributed.local_batch_size(train_cfg.batch_size, env.world_size)  # options before the data
    # what defines the run, compared with the checkpoint's on --resume before any data work
    record = run_record(args, data, train_cfg)
    if args.resume and saved is not None:
        check_resume(saved, record, out / "last.pt")
    workers = (
        args.workers
        if args.workers is not None
        else distributed.default_workers(device, env.local_world_size)
    )
    progress = not args.no_progress and env.is_main
    if env.is_main:
        warn_thick_inputs([c.image for c in list_cases(data) if c.image is not None])
    if args.stage == 2:
        from deeptree.stage2.task import load_sources, stage2_task

        cases = load_sources(data, progress=progress)
    else:
        from deeptree.stage1.cache import load_cohort, load_stage1_case

        cache = Path(args.cache) if args.cache else stage1_cache_dir(data, out)
        if env.world_size > 1:
            # each rank prepares its share of the cache (cases rank, rank + N, ...), then every
            # rank memory-maps all of them (a node that does not see the others' cache
            # prepares what it misses in load_cohort: same arrays)
            for case in list_cases(data)[env.rank :: env.world_size]:
                load_stage1_case(case, cache)
            distributed.barrier()
        cases = load_cohort(data, cache, progress=progress)
    train_cases, val_cases = split_cases(cases, train_cfg.val_cases)
    if env.is_main:
        print(f"{len(train_cases)} training and {len(val_cases)} validation cases from {data}")
        if env.world_size > 1:
            print(
                f"{env.world_size} processes (torchrun), {train_cfg.batch_size // env.world_size} "
                f"of the batch of {train_cfg.batch_size} each, {workers} DataLoader workers each"
            )
    if args.stage == 2:
        task = stage2_task(
            train_cases, val_cases, net, train_cfg, data=data_cfg, breakage=cfg.breakage,
            attention=cfg.attention, profile=args.profile, device=device,
        )  # fmt: skip
    else:
        from deeptree.stage1.task import stage1_task

        task = stage1_task(
            train_cases, val_cases, args.variant, net, train_cfg, profile=args.profile,
            device=device,
        )  # fmt: skip
    task.meta["run"] = record  # in every checkpoint: what a --resume must match
    result = train(
        task,
        train_cfg,
        args.out,
        resume=args.resume,
        device=device,
        num_workers=workers,
        progress=progress,
    )
    if not env.is_main:
        return 0
    print(
        f"done: {result.iteration} iterations in {result.seconds:.1f} s; checkpoint {result.checkpoint}"
    )
    if result.best is not None:
        print(f"best validated model ({task.select}): {result.best}")
    return 0


def _refuse_another_stage(checkpoint, stage: int) -> dict | None:
    """Never overwrite (or resume from) a checkpoint of the other stage in ``--out``; returns
    the checkpoint read (None when there is none)."""
    from deeptree.checkpoints import load_checkpoint

    if not checkpoint.is_file():
        return None
    state = load_checkpoint(checkpoint)
    found = state.get("meta", {}).get("stage")
    if found is not None and found != stage:
        raise InputError(
            f"{checkpoint}: holds a stage-{found} checkpoint; give stage {stage} another --out"
        )
    return state


#: The options that define a run, by the key of :func:`run_record`, in the order checked (the
#: profile first: it sets the defaults of the others).
RUN_OPTIONS = {
    "profile": "--profile",
    "variant": "--variant",
    "data": "--data",
    "cases": "--data",
    "val_cases": "--val",
    "iterations": "--iterations",
    "batch_size": "--batch-size",
    "seed": "--seed",
}


def run_record(args, data, train_cfg) -> dict:
    """What defines a training run, from the options alone (no data are read).

    Parameters
    ----------
    args : argparse.Namespace
        ``stage``, ``profile``, ``variant`` of ``deeptree train``.
    data : Path
        ``--data``.
    train_cfg : TrainConfig
        The profile's training settings with the overrides applied (``iterations``,
        ``batch_size``, ``seed``, ``val_cases``).

    Returns
    -------
    dict
        ``stage``; ``data`` (the dataset's resolved path, str); ``cases`` (the case ids found
        in it, sorted, list of str); ``val_cases`` (the ids held out for validation: the last
        ``--val`` of ``cases``); ``profile``; ``variant`` (None for stage 2);
        ``iterations``, ``batch_size``, ``seed`` (int). Stored in every checkpoint as
        ``meta["run"]``; :func:`check_resume` compares it.

    Raises
    ------
    InputError
        ``--val`` below 0, or as large as the number of cases (none left to train on).
    """
    n_val = train_cfg.val_cases
    if n_val < 0:
        raise InputError(f"--val {n_val}: the number of cases held out for validation must be 0 or more")
    cases = [c.id for c in list_cases(data)]
    if cases and n_val >= len(cases):
        raise InputError(
            f"--val {n_val}: {data} has {len(cases)} case(s); holding out {n_val} for validation "
            f"leaves none to train on (at most {len(cases) - 1})"
        )
    return {
        "stage": int(args.stage),
        "data": str(data.resolve()),
        "cases": cases,
        "val_cases": cases[len(cases) - n_val :] if n_val else [],
        "profile": args.profile,
        "variant": args.variant if args.stage == 1 else None,
        "iterations": int(train_cfg.iterations),
        "batch_size": int(train_cfg.batch_size),
        "seed": int(train_cfg.seed),
    }


def check_resume(state: dict, record: dict, checkpoint) -> None:
    """Refuse a ``--resume`` whose options define another run than the checkpoint's.

    Parameters
    ----------
    state : dict
        The checkpoint (:func:`deeptree.checkpoints.load_checkpoint`). Its ``meta["run"]``
        (:func:`run_record`); a checkpoint written before that record existed is compared on
        what it holds (profile, variant, iterations, batch size, seed, the number of
        validation cases).
    record : dict
        :func:`run_record` of this command.
    checkpoint : Path
        Its file, for the message.

    Raises
    ------
    InputError
        One line naming the first option that differs and both values.
    """
    meta, cfg = state.get("meta", {}), state.get("train_config", {})
    saved = meta.get("run")
    if saved is None:  # an older checkpoint: what it recorded elsewhere
        saved = {k: meta[k] for k in ("profile", "variant") if k in meta}
        saved.update({k: cfg[k] for k in ("iterations", "batch_size", "seed") if k in cfg})
        if "val_cases" in cfg:
            saved["n_val"] = cfg["val_cases"]
    for key, option in RUN_OPTIONS.items():
        if key == "val_cases" and key not in saved and "n_val" in saved:
            before, now = saved["n_val"], len(record["val_cases"])
        elif key in saved:
            before, now = saved[key], record[key]
        else:
            continue
        if before != now:
            raise InputError(
                f"{checkpoint}: {option} differs from the run being resumed: "
                f"{_describe(key, before, now)}; --resume continues the same run: give the "
                "options it was started with, or another --out (or --overwrite) to start again"
            )


def _describe(key: str, before, now) -> str:
    """``the run had X, this command gives Y`` for :func:`check_resume` (lists summarised)."""
    if key == "cases":
        added = [c for c in now if c not in before]
        missing = [c for c in before if c not in now]
        parts = [f"{len(before)} cases then, {len(now)} now"]
        parts += [f"new: {_ids(added)}"] if added else []
        parts += [f"gone: {_ids(missing)}"] if missing else []
        return ", ".join(parts)
    if key == "val_cases" and isinstance(before, list):
        return (
            f"the run held out {len(before)} case(s) for validation ({_ids(before) or 'none'}), "
            f"this command {len(now)} ({_ids(now) or 'none'})"
        )
    if key == "val_cases":
        return f"the run held out {before} case(s) for validation, this command {now}"
    return f"the run has {before}, this command {now}"


def _ids(ids: list, most: int = 4) -> str:
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _refuse_existing_run(out, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over the run in ``out`` unless asked (``--overwrite``).

    Raises
    ------
    InputError
        ``out`` holds ``last.pt``, ``log.jsonl`` or ``best.pt`` and neither ``resume`` nor
        ``overwrite`` is set.
    """
    from deeptree.train import BEST_NAME, CHECKPOINT_NAME, LOG_NAME

    if resume or overwrite:
        return
    found = [name for name in (CHECKPOINT_NAME, LOG_NAME, BEST_NAME) if (out / name).is_file()]
    if found:
        raise InputError(
            f"{out}: holds a training run ({', '.join(found)}); give --resume to continue it, "
            "--overwrite to start again, or another --out"
        )


def stage1_cache_dir(data, out):
    """Where ``train`` caches the prepared stage-1 arrays when ``--cache`` is not given.

    ``<data>/.cache_stage1`` when the dataset folder can be written; else (a read-only
    dataset) ``$XDG_CACHE_HOME/deeptree/stage1-<key>`` (``~/.cache`` when the variable is
    unset; ``key`` from the dataset's absolute path), else ``<out>/cache_stage1``. The choice
    is printed on stderr when it is not the first.

    Parameters
    ----------
    data, out : Path
        The dataset and the run folder.

    Returns
    -------
    Path
        A folder that exists and can be written.
    """
    import hashlib
    import os
    from pathlib import Path

    first = data / ".cache_stage1"
    if _writable(first):
        return first
    key = hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for folder in (base / "deeptree" / f"stage1-{key}", out / "cache_stage1"):
        if _writable(folder):
            print(
                f"deeptree train: {data} cannot be written; the prepared arrays are cached in {folder}",
                file=sys.stderr,
            )
            return folder
    return first  # nothing writable: the first write names the folder and the problem


def _writable(folder) -> bool:
    """True if ``folder`` exists or can be created, and a file can be written in it."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True
