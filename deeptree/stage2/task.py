"""Stage 2 training: data sources, the :class:`deeptree.train.TrainingTask` of the breakage
network, and its validation (the share of simulated gaps a connector reconnects,
:func:`evaluate_gap_repair`).

The paper's stage 2 is the default: crops centred on simulated breakages, no simulated
fragments, the last model; it starts as stage 1 does, with a lower momentum
(``deeptree.config.STAGE2_START``: the output heads at breakage probability 0.01, a
learning-rate warm-up, SGD momentum 0.9; the paper starts as nnU-Net), because nnU-Net's start
left networks silent at the cpu budget (chosen on validation,
``benchmarks/stage2_recipe_check.py``). The additions this repository tried
are named options (:data:`STAGE2_OPTIONS`, :func:`stage2_options`), each off by default; the
reproduction trains each one beside the paper's and shows what it changes in a row of its
own (``deeptree.evaluation.reproduce``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from deeptree.attention import breakage_centres
from deeptree.checkpoints import BEST_NAME, CHECKPOINT_NAME
from deeptree.config import (
    AttentionConfig,
    BreakageConfig,
    NetworkConfig,
    Stage2DataConfig,
    TrainConfig,
)
from deeptree.io import InputError, list_cases, load_case, read_nifti
from deeptree.masks import label_components
from deeptree.networks import init_foreground_prior, stage2_network
from deeptree.orientation import case_to_ras, to_ras
from deeptree.phantom import generate_case
from deeptree.resample import training_record
from deeptree.stage1.data import AugmentConfig
from deeptree.stage1.losses import Stage1Loss
from deeptree.stage2.data import (
    Stage2CropDataset,
    Stage2Source,
    prepare_stage2_source,
    simulate_stage2_sample,
)
from deeptree.stage2.gapfill import fill_gaps
from deeptree.stage2.predict import (
    GAPFILL_CONNECTORS,
    Connector,
    paste_patches,
    predict_breakage,
    split_connector,
)
from deeptree.train import TrainingTask


def evaluate_gap_repair(
    samples: Sequence,
    stage2: Connector,
    patch_size: Sequence[int] | None = None,
    *,
    device=None,
    max_gap: float = 15.0,
) -> dict:
    """Share of simulated gaps a connector reconnects.

    For each ``deeptree.stage2.data.Stage2Sample`` (broken GT + fragments, its attention), the
    connector runs at every attention centre and its voxels are added to the sample's mask;
    a gap is *repaired* when its proximal and distal skeleton voxels lie in one
    26-connected component of the result.

    Parameters
    ----------
    samples : list of Stage2Sample
    stage2 : Connector
        A network, a LoadedModel, or a gap-filler name (see ``deeptree.pipeline.repair``).
    patch_size : 3 ints, optional
        For a bare network.
    device : optional
    max_gap : float
        Gap filler's longest join (voxels).

    Returns
    -------
    dict
        ``repair_rate`` (repaired / gaps), ``gaps``, ``repaired``, ``gap_dice`` (Dice of the
        added voxels against ``Y^B``, all samples pooled), ``fragments``,
        ``fragments_joined`` (fragments attached to a gap's proximal tree, the false
        connections), ``added_voxels``.
    """

    model, meta = split_connector(stage2)
    patch = patch_size if patch_size is not None else meta.get("patch_size")
    gaps = repaired = fragments = joined = 0
    tp = added_total = label_total = 0
    for sample in samples:
        centres = breakage_centres(sample.h_bar, meta.get("centre_threshold", 0.5))
        if isinstance(model, str):
            added = fill_gaps(
                sample.mask,
                centres,
                sample.source.image,
                path=GAPFILL_CONNECTORS[model],
                max_distance=max_gap,
            ).added
        else:
            patches = predict_breakage(
                model, sample.source.image, sample.h_bar, centres, patch, device=device
            )
            added = paste_patches(sample.mask.shape, patches) & ~sample.mask
        labels, _ = label_components(sample.mask | added)
        trees = set()
        for gap in sample.gaps:
            gaps += 1
            same = labels[gap.proximal_voxel] == labels[gap.distal_voxel]
            repaired += int(same)
            trees.add(int(labels[gap.proximal_voxel]))
        fragment_labels, n_frag = label_components(sample.fragments)
        fragments += n_frag
        for k in range(1, n_frag + 1):
            voxel = tuple(np.argwhere(fragment_labels == k)[0])
            joined += int(labels[voxel] in trees)
        tp += int((added & sample.label).sum())
        added_total += int(added.sum())
        label_total += int(sample.label.sum())
    return {
        "repair_rate": repaired / gaps if gaps else float("nan"),
        "gaps": gaps,
        "repaired": repaired,
        "gap_dice": 2 * tp / (added_total + label_total)
        if added_total + label_total
        else float("nan"),
        "fragments": fragments,
        "fragments_joined": joined,
        "added_voxels": added_total,
    }


def source_from_case(case) -> Stage2Source:
    """:func:`prepare_stage2_source` of a ``deeptree.phantom.PhantomCase`` (its lung mask is
    the fragments' room)."""
    return prepare_stage2_source(case.ct, case.airway, case.spacing, case.id, case.lung)


def phantom_sources(profile: str, seeds: Sequence, progress: bool = False) -> list[Stage2Source]:
    """Generate phantoms (``deeptree.phantom.generate_case``) and prepare them for stage 2.

    Parameters
    ----------
    profile : str
        Phantom profile (``smoke``, ``cpu``, ``gpu``).
    seeds : sequence of int or tuples
        One case per seed.

    Returns
    -------
    list of Stage2Source (the lung mask is the fragments' room)
    """
    from tqdm.auto import tqdm

    out = []
    for seed in tqdm(list(seeds), desc="phantoms", disable=not progress):
        name = "_".join(str(int(s)) for s in np.atleast_1d(seed))
        out.append(source_from_case(generate_case(profile, seed, case_id=f"PHANTOM_{name}")))
    return out


#: The additions to the paper's stage 2, by name (all off by default), with what each does.
STAGE2_OPTIONS: dict[str, str] = {
    "negatives": "half of the training crops centred on negative attention centres "
    "(Stage2DataConfig.negative_fraction = 0.5; the paper: breakages only)",
    "fragments": "simulated false-positive fragments near the airway, 0.5 per gap "
    "(Stage2DataConfig.fragments_per_gap = 0.5; the paper: none)",
    "best": "the model of the best validation gap Dice (best.pt) instead of the last one "
    "(the paper: the model after the last epoch)",
}

#: Option values (see :data:`STAGE2_OPTIONS`).
NEGATIVE_FRACTION_OPTION = 0.5
FRAGMENTS_PER_GAP_OPTION = 0.5


def check_stage2_options(options: Sequence[str]) -> tuple[str, ...]:
    """``options`` as a tuple in :data:`STAGE2_OPTIONS` order; InputError naming an unknown one."""
    unknown = [o for o in options if o not in STAGE2_OPTIONS]
    if unknown:
        raise InputError(
            f"unknown stage-2 option {unknown[0]!r}: choose from {', '.join(STAGE2_OPTIONS)}"
        )
    return tuple(o for o in STAGE2_OPTIONS if o in set(options))


def stage2_options(
    options: Sequence[str], data: Stage2DataConfig, cfg: TrainConfig
) -> tuple[Stage2DataConfig, TrainConfig, bool]:
    """Apply named additions (:data:`STAGE2_OPTIONS`) to the paper's stage-2 settings.

    Parameters
    ----------
    options : sequence of str
        Any of ``"negatives"``, ``"fragments"``, ``"best"``; empty: the paper's.
    data : Stage2DataConfig
    cfg : TrainConfig

    Returns
    -------
    data, cfg : the changed copies
    best : bool
        Keep the best validated model (:func:`stage2_checkpoint`) instead of the last.
    """
    options = check_stage2_options(options)
    if "negatives" in options:
        data = replace(data, negative_fraction=NEGATIVE_FRACTION_OPTION)
    if "fragments" in options:
        data = replace(data, fragments_per_gap=FRAGMENTS_PER_GAP_OPTION)
    return data, cfg, "best" in options


def stage2_checkpoint(out_dir, best: bool = False) -> Path:
    """The stage-2 model of a training folder: ``last.pt`` (the paper's), or with ``best``
    the validated ``best.pt`` (when validation ran, else ``last.pt``).

    Raises
    ------
    InputError
        When the folder has no ``last.pt``.
    """
    out_dir = Path(out_dir)
    if best and (out_dir / BEST_NAME).is_file():
        return out_dir / BEST_NAME
    if not (out_dir / CHECKPOINT_NAME).is_file():
        raise InputError(f"{out_dir}: no {CHECKPOINT_NAME} (not a stage-2 training folder?)")
    return out_dir / CHECKPOINT_NAME


def stage2_task(
    train_sources: Sequence[Stage2Source],
    val_sources: Sequence[Stage2Source],
    net: NetworkConfig,
    cfg: TrainConfig,
    *,
    data: Stage2DataConfig = Stage2DataConfig(),
    breakage: BreakageConfig | None = None,
    attention: AttentionConfig | None = None,
    profile: str | None = None,
    device=None,
    val_simulations: int = 1,
):
    """Assemble the stage-2 :class:`deeptree.train.TrainingTask` (mirrors ``stage1_task``).

    Parameters
    ----------
    train_sources, val_sources : list of Stage2Source
        Validation simulates ``val_simulations`` fixed breakages per held-out case and
        reports the gap repair rate and the Dice of the predicted ``Y^B``
        (:func:`deeptree.stage2.task.evaluate_gap_repair`); the model with the best of that
        Dice is also saved (``TrainingTask.select``: ``best.pt``), for the option ``"best"``
        (:func:`stage2_checkpoint`); the paper's model is ``last.pt``. No validation if empty.
    net : NetworkConfig
        ``filters`` and ``patch_size`` of the stage-2 network.
    cfg : TrainConfig
        Seeds the weights and the crop stream; ``foreground_prior`` (0.01 in the profiles,
        ``deeptree.config.STAGE2_START``; None: nnU-Net's start, the paper's) sets the
        network's starting breakage probability
        (:func:`deeptree.networks.init_foreground_prior`); ``warmup_iterations`` the
        learning-rate warm-up (:func:`deeptree.train.poly_lr`), ``momentum`` SGD's.
    data, breakage, attention
        Sample simulation settings.
    profile : str, optional
        Recorded in the checkpoint.
    device : optional
        Where validation inference runs (default: the model's device).

    Returns
    -------
    deeptree.train.TrainingTask
    """

    breakage = breakage if breakage is not None else BreakageConfig()
    attention = attention if attention is not None else AttentionConfig()
    torch.manual_seed(cfg.seed)
    model = stage2_network(net)
    if cfg.foreground_prior is not None:
        init_foreground_prior(model, cfg.foreground_prior)
    criterion = Stage1Loss("plain")  # 2-class Dice + CE with deep supervision, no GUL
    dataset = Stage2CropDataset(
        train_sources,
        net.patch_size,
        data,
        breakage,
        attention,
        seed=cfg.seed,
        augment=AugmentConfig(),
        length=cfg.iterations * cfg.batch_size,
        batch_size=cfg.batch_size,
    )

    def loss_fn(outputs, batch):
        return criterion(outputs, batch["label"], None)

    meta = {
        "stage": 2,
        "filters": list(net.filters),
        "patch_size": list(net.patch_size),
        "alpha": float(attention.alpha),
        "centre_threshold": float(attention.centre_threshold),
        "profile": profile,
        "name": "stage 2, breakage connection",
        # the voxel size and HU window segment resamples and normalises to
        **training_record([src.spacing for src in train_sources], "stage-2 training sources"),
    }
    validate = None
    if val_sources:
        validate = _stage2_validator(
            list(val_sources), data, breakage, attention, net, cfg.seed, val_simulations, device
        )
    # the network with the best validation gap Dice is also saved as best.pt (option "best"):
    # at the cpu budget one training seed in five repaired 11 of 12 validation gaps at
    # iteration 300 and then fell silent for good (benchmarks/HISTORY.md, stage 2)
    return TrainingTask(
        model=model,
        loss_fn=loss_fn,
        dataset=dataset,
        validate=validate,
        meta=meta,
        select="gap_dice" if validate is not None else None,
    )


def _stage2_validator(sources, data, breakage, attention, net, seed, n_sim, device):

    samples = [
        simulate_stage2_sample(
            s, np.random.default_rng([seed, 10_000 + i, j]), data, breakage, attention
        )
        for i, s in enumerate(sources)
        for j in range(n_sim)
    ]

    def validate(model: torch.nn.Module) -> dict:
        dev = next(model.parameters()).device if device is None else device
        result = evaluate_gap_repair(samples, model, net.patch_size, device=dev)
        return {k: float(result[k]) for k in ("repair_rate", "gap_dice", "gaps")}

    return validate


def load_sources(root, progress: bool = False) -> list[Stage2Source]:
    """Prepare every case of an ATM'22-layout dataset (sorted by id) for stage 2, in RAS
    voxel order (``deeptree.orientation``): :func:`case_sources` of its cases.

    Raises
    ------
    InputError
        An empty dataset, a CT without its label, or any problem of
        :func:`prepare_stage2_source`.
    """
    cases = list_cases(root)
    if not cases:
        raise InputError(f"{root}: no cases in imagesTr/labelsTr")
    for paths in cases:
        if paths.image is None or paths.label is None:
            raise InputError(f"case {paths.id}: needs both a CT and a label in {root}")
    return case_sources(cases, progress=progress)


def case_sources(cases: Sequence, progress: bool = False) -> list[Stage2Source]:
    """The stage-2 sources of cases, in the models' (RAS) voxel order.

    Parameters
    ----------
    cases : sequence of ``deeptree.io.CasePaths``
        Cases of an ATM'22-layout folder (``imagesTr`` / ``labelsTr``, each with its label);
        a ``lungsTr/<id>.nii.gz`` beside ``labelsTr`` (phantom cohorts have one: bool mask,
        the CT's grid) is the room of the simulated fragments.
    progress : bool
        A progress bar.

    Returns
    -------
    list of ``deeptree.stage2.data.Stage2Source``
        One per case, in order (normalised CT, GT airway, its parsed tree, spacing, room).

    Raises
    ------
    InputError
        Any problem of :func:`deeptree.io.load_case` or :func:`prepare_stage2_source`.
    """
    from tqdm.auto import tqdm

    out = []
    for paths in tqdm(cases, desc="prepare", disable=not progress):
        case = load_case(paths.image, paths.label, case_id=paths.id)
        lung_path = Path(paths.label).parent.parent / "lungsTr" / f"{paths.id}.nii.gz"
        room = read_nifti(lung_path).array > 0 if lung_path.is_file() else None
        # the models' voxel order (deeptree.orientation): an LPS case is trained on as RAS
        room = to_ras(room, case.affine, str(lung_path))[0] if room is not None else None
        case = case_to_ras(case)
        out.append(prepare_stage2_source(case.ct, case.label, case.spacing, paths.id, room))
    return out
