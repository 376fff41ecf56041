"""``deeptree reproduce``: the paper's ablation (Table 2) and comparison (Table 1) in one command.

Examples::

    deeptree reproduce --profile cpu --out runs/reproduce-cpu                 # synthetic cohort
    deeptree reproduce --profile gpu --data /data/ATM22 --out runs/atm22       # real ATM'22 folder
    deeptree reproduce --profile gpu --out runs/gpu --stage1-iterations 5000 --stage2-iterations 2000
    deeptree reproduce --profile gpu --data /data/ATM22 --out runs/atm22 --devices all    # 1 model per GPU
    deeptree reproduce --models results/20261208-cpu-reference --out runs/rescore  # shipped models

Every model is trained once per training seed (``--seeds N``: seeds 0..N-1; the profile's
default, cpu: 3), and each table cell is the mean over seeds of the case means with a 95%
interval; the estimated run time is printed first. Without ``--data`` the training and
validation phantoms are generated into ``<out>/cohort`` (``--seed``) and the test phantoms
into ``<out>/test_cohort`` (``--test-seed``, ``--test-cases``); with ``--data`` any ATM'22-layout folder (``imagesTr/ID_0000.nii.gz`` +
``labelsTr/ID.nii.gz``) is split 50/20/20 (``deeptree.evaluation.paper.split_sizes``). Models go to
``<out>/models`` and are reused by a second run; tables (CSV + markdown) to ``<out>/tables``,
figures to ``<out>/figures``. ``--devices cuda:0,cuda:1,...`` (or ``all``) trains the models in
parallel, one per GPU (``deeptree.evaluation.fanout``), then evaluates as usual. On a CPU the
profile's trainings run side by side by default (cpu: two one-thread trainings on 2 cores);
``--devices cpu`` trains them one after the other. ``--models DIR`` re-scores the models
shipped in a results folder (``deeptree ship``): the settings, the phantoms' seeds and the
output rule come from its manifest, nothing is trained (``--test-cases`` and ``--seeds`` may
reduce what is scored; models trained on a ``--data`` folder need that folder again). See ``deeptree.evaluation.reproduce``.
"""

from __future__ import annotations

from deeptree.config import reproduce_settings
from deeptree.evaluation.budget import machine_step_seconds
from deeptree.io import InputError
from deeptree.threads import cpu_description

NAME = "reproduce"
HELP = "train/load every variant, evaluate the test cases, write the paper's tables and figures"


def add_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="run profile: smoke, cpu or gpu")
    parser.add_argument("--data", help="ATM'22-layout dataset folder (default: a synthetic cohort)")
    parser.add_argument("--out", required=True, help="run folder (models, tables, figures)")
    parser.add_argument(
        "--models",
        help="results folder with shipped models (deeptree ship): re-score them, train nothing",
    )
    parser.add_argument(
        "--stage1-iterations", type=int, help="training length of every stage-1 model"
    )
    parser.add_argument(
        "--stage2-iterations", type=int, help="training length of the stage-2 model"
    )
    parser.add_argument(
        "--cases", type=int, help="synthetic training + validation phantoms (default: the profile's)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the training and validation phantoms"
    )
    parser.add_argument(
        "--seeds", type=int, help="number of training seeds 0..N-1 (default: the profile's)"
    )
    parser.add_argument(
        "--test-cases", type=int, help="synthetic test phantoms (default: the profile's)"
    )
    parser.add_argument(
        "--test-seed", type=int, default=1000, help="seed of the test phantoms"
    )
    parser.add_argument(
        "--extra-seeds",
        type=int,
        help="training seeds (the first ones) that also train clDice and the stage-2 options",
    )
    parser.add_argument(
        "--validations",
        type=int,
        default=4,
        help="validation checks per stage-1 training, evenly spaced (its training curve)",
    )
    parser.add_argument(
        "--no-validation",
        action="store_true",
        help="do not score the validation cases after training",
    )
    parser.add_argument(
        "--no-stage2", action="store_true", help="stage 1 only (no stage-2 rows, no DeepTree row)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="also write napari 3D screenshots (needs a display, e.g. xvfb-run)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--workers",
        type=int,
        help="DataLoader worker processes for training (default: 0 on CPU, up to 12 on a GPU)",
    )
    parser.add_argument(
        "--devices",
        help="train the models in parallel, one per device: 'all' (every GPU) or a list such "
        "as cuda:0,cuda:1 (evaluation then runs on --device); on a CPU the default is the "
        "profile's trainings side by side (cpu: cpu,cpu), and 'cpu' trains one after the other",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from pathlib import Path

    from deeptree.evaluation.fanout import parse_devices
    from deeptree.evaluation.outputs import render_figures
    from deeptree.evaluation.reproduce import estimate_seconds, reproduce
    from deeptree.networks import choose_device

    choose_device(args.device)  # refuse an unusable device before any training
    devices = parse_devices(args.devices)
    if args.data is not None and Path(args.out).resolve() == Path(args.data).resolve():
        raise InputError(f"{args.out}: --out is the dataset folder (--data); give the run its own folder")

    if args.models is not None:
        return _rescore(args)
    settings = reproduce_settings(
        args.profile,
        stage1_iterations=args.stage1_iterations,
        stage2_iterations=args.stage2_iterations,
        n_cases=args.cases,
        validate=False if args.no_validation else None,
        seed=args.seed,
        seeds=args.seeds,
        n_test=args.test_cases,
        test_seed=args.test_seed,
        extra_seeds=args.extra_seeds,
        validations=args.validations,
    )
    estimate = estimate_seconds(settings, machine_step_seconds())
    print(
        f"estimated time at the cpu-profile step rates measured on this CPU class "
        f"({cpu_description()}): {estimate['total'] / 60:.0f} min",
        {k: round(v) for k, v in estimate.items()},
    )
    result = reproduce(
        args.profile,
        args.out,
        args.data,
        settings=settings,
        device=args.device,
        progress=not args.no_progress,
        stage2=not args.no_stage2,
        workers=args.workers,
        devices=devices or None,
    )
    if args.render:
        render_figures(result, args.out)
    print(result.paths["tables_md"].read_text())
    print(
        f"tables: {result.paths['tables_md'].parent}; figures: {result.paths['curves_png'].parent}"
    )
    print("seconds:", {k: round(v, 1) for k, v in result.seconds.items()})
    return 0


#: Options that set what is trained: the manifest of shipped models fixes them.
_TRAINING_OPTIONS = (
    "stage1_iterations", "stage2_iterations", "cases", "extra_seeds", "no_validation",
    "no_stage2", "workers",
)  # fmt: skip


def _rescore(args) -> int:
    """``--models``: the shipped models re-scored with the manifest's settings."""
    from deeptree.evaluation.reproduce import reproduce
    from deeptree.evaluation.shipped import shipped_settings, verify_shipped

    given = [f"--{k.replace('_', '-')}" for k in _TRAINING_OPTIONS if getattr(args, k)]
    if given:
        raise InputError(
            f"--models {args.models}: {', '.join(given)} would change what was trained; the "
            "manifest fixes it (only --test-cases and --seeds may reduce what is scored)"
        )
    manifest = verify_shipped(args.models)
    settings = shipped_settings(manifest, n_test=args.test_cases, seeds=args.seeds)
    result = reproduce(
        settings.profile, args.out, args.data, settings=settings, device=args.device,
        progress=not args.no_progress, models=args.models,
    )  # fmt: skip
    print(result.paths["tables_md"].read_text())
    print("seconds:", {k: round(v, 1) for k, v in result.seconds.items()})
    return 0
