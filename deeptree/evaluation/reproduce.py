"""The paper's comparisons in one call: split a dataset, train or load every model, predict the
test cases, evaluate, and write the tables and figures (issue 9, notebook 07,
``deeptree reproduce``).

What is compared
    *Table 2 (ablation)*: the stage-1 network ("nnUNet*") trained with each of the four losses
    of ``deeptree.losses`` (``plain``, ``amc``, ``gul``, ``amc+gul``), each scored without and
    with stage 2 (one stage-2 model, trained once, repairs all four). *Table 1 (comparison)*,
    with the methods that can be built here: the classical baseline
    (``deeptree.baselines.region_growing``), plain nnUNet* with DiceCE (= Table 2 row 1),
    clDice (DiceCE + MONAI's soft clDice, :class:`DiceCEClDiceLoss`, a model of its own),
    GUL, the WingsNet loss (= Table 2 row 3: nnUNet* with DiceCE + GUL; WingsNet's own network
    is not built), and DeepTree (AMC + GUL + stage 2 = Table 2 row 8).

Metrics
    ``deeptree.metrics.airway_metrics`` with the paper's protocol (trachea and main bronchi
    excluded, largest 26-connected component of the prediction), BD, TLD and precision as mean
    ± sample standard deviation over the test cases; per-generation TLD and BD pooled over the
    test cases (``deeptree.metrics.generation_metrics``).

The paper's numbers
    :data:`PAPER_TABLE1` and :data:`PAPER_TABLE2` hold the published figures (percent). They
    were measured on real CT (the BAS dataset, 20 test cases with curated labels) and are
    printed *beside* ours, labelled :data:`PAPER_SOURCE`; they are never ours.

Split (:func:`split_sizes`)
    The paper splits 90 cases 50/20/20 (train/validation/test). For ``n`` cases we keep the
    proportions 5/9, 2/9, 2/9: ``n_test = n_val = floor(2 n / 9 + 1/2)`` (round half up), at
    least 1 test case, at least 1 validation case when ``n >= 3``, and the rest (at least 1)
    trains. Cases are taken in id order: training first, then validation, then test (a fixed,
    seed-free split as the paper's fixed split). 9 cases give 5/2/2, 3 give 1/1/1, 18 give
    10/4/4, 90 give 50/20/20.

Models
    Saved under ``<out>/models/<name>/last.pt`` (``deeptree.train`` checkpoints, loadable by
    ``deeptree.inference.load_stage1_model`` / ``deeptree.pipeline.load_stage2_model`` and
    ``deeptree predict``). A finished checkpoint whose metadata (variant, loss, network,
    profile, training case ids) and schedule match is loaded instead of retrained; an
    unfinished one is resumed; one that does not match is an error (never overwritten).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from deeptree.config import NetworkConfig, TrainConfig, check_profile, get_config
from deeptree.io import InputError, atomic_write

#: Label of every published figure: they come from real CT, not from this reproduction.
PAPER_SOURCE = "paper, real data (BAS, 20 test cases)"

#: The paper's Table 1 (percent, mean and standard deviation): method -> metric -> (mean, std).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "Juarez et al. [2]": {"BD": (69.2, 25.4), "TLD": (53.5, 20.9), "precision": (99.9, 0.1)},
    "UNet++ [25]": {"BD": (87.2, 10.9), "TLD": (74.2, 11.8), "precision": (99.3, 0.6)},
    "clDice [14]": {"BD": (88.0, 10.2), "TLD": (76.2, 11.1), "precision": (99.1, 0.7)},
    "nnUNet [3]": {"BD": (89.1, 5.5), "TLD": (76.1, 6.4), "precision": (99.9, 0.1)},
    "WingsNet [24]": {"BD": (89.2, 5.8), "TLD": (77.1, 5.7), "precision": (99.0, 0.8)},
    "Qin et al. [12]": {"BD": (90.9, 8.8), "TLD": (80.7, 9.9), "precision": (98.4, 1.0)},
    "Zheng et al. [23]": {"BD": (91.1, 5.5), "TLD": (80.1, 6.6), "precision": (98.9, 0.7)},
    "DeepTree": {"BD": (95.4, 3.6), "TLD": (88.9, 4.5), "precision": (97.2, 1.1)},
}

#: The paper's Table 2 (percent): (stage-1 variant, with stage 2) -> metric -> (mean, std).
PAPER_TABLE2: dict[tuple[str, bool], dict[str, tuple[float, float]]] = {
    ("plain", False): {"BD": (90.3, 5.1), "TLD": (78.1, 6.7), "precision": (99.8, 0.2)},
    ("amc", False): {"BD": (91.9, 4.7), "TLD": (81.0, 5.9), "precision": (99.4, 0.4)},
    ("gul", False): {"BD": (93.3, 4.4), "TLD": (83.1, 5.9), "precision": (98.8, 0.6)},
    ("amc+gul", False): {"BD": (95.1, 3.6), "TLD": (88.2, 4.7), "precision": (97.4, 1.1)},
    ("plain", True): {"BD": (91.2, 5.2), "TLD": (79.6, 6.5), "precision": (99.7, 0.3)},
    ("amc", True): {"BD": (92.5, 4.5), "TLD": (82.3, 5.7), "precision": (99.4, 0.4)},
    ("gul", True): {"BD": (94.1, 4.0), "TLD": (85.9, 5.8), "precision": (98.4, 0.7)},
    ("amc+gul", True): {"BD": (95.4, 3.6), "TLD": (88.9, 4.5), "precision": (97.2, 1.1)},
}

#: Metrics of the paper's tables (fractions in our rows, percent in the tables).
TABLE_METRICS: tuple[str, ...] = ("BD", "TLD", "precision")

#: The paper's split: 50 training, 20 validation, 20 test cases out of 90.
PAPER_SPLIT: tuple[int, int, int] = (50, 20, 20)

#: Stage-1 models: the four ablation variants (``deeptree.losses.VARIANTS``) and clDice.
CLDICE = "cldice"
REGION_GROWING = "region-growing"
STAGE2_SUFFIX = "+stage2"

#: Table 1 rows: (method id of our rows, our label, the paper's row beside it or None).
TABLE1_ROWS: tuple[tuple[str, str, str | None], ...] = (
    (REGION_GROWING, "classical: region growing (multi-threshold)", None),
    ("plain", "nnUNet* with DiceCE", "nnUNet [3]"),
    (CLDICE, "clDice: nnUNet* with DiceCE + soft clDice", "clDice [14]"),
    ("gul", "GUL, the WingsNet loss: nnUNet* with DiceCE + GUL", "WingsNet [24]"),
    ("amc+gul" + STAGE2_SUFFIX, "DeepTree: AMC + GUL + stage 2", "DeepTree"),
)

#: Human names of the ablation variants (the paper's Table 2 columns).
VARIANT_FLAGS: dict[str, tuple[bool, bool]] = {
    "plain": (False, False),
    "amc": (True, False),
    "gul": (False, True),
    "amc+gul": (True, True),
}


# --------------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------------
def split_sizes(n: int) -> tuple[int, int, int]:
    """Training, validation and test sizes for ``n`` cases in the paper's 50/20/20 proportions.

    ``n_test = n_val = floor(2 n / 9 + 1/2)``; at least 1 test case; at least 1 validation
    case when ``n >= 3``; the rest trains (see the module docstring).

    Parameters
    ----------
    n : int
        Number of cases (>= 2).

    Returns
    -------
    (n_train, n_val, n_test) : tuple of int, summing to ``n``.

    Raises
    ------
    InputError
        Fewer than 2 cases (one to train, one to test).
    """
    n = int(n)
    if n < 2:
        raise InputError(f"reproduce: need at least 2 cases (1 training, 1 test), got {n}")
    share = PAPER_SPLIT[2] / sum(PAPER_SPLIT)
    n_test = max(1, math.floor(n * share + 0.5))
    n_val = max(1 if n >= 3 else 0, math.floor(n * share + 0.5))
    while n - n_test - n_val < 1:  # small n: training keeps at least one case
        if n_val > (1 if n >= 3 else 0):
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


@dataclass(frozen=True)
class Split:
    """Cases of each part (``deeptree.io.CasePaths``, id order)."""

    train: list
    val: list
    test: list

    def ids(self) -> dict[str, list[str]]:
        """``{"train": [...], "val": [...], "test": [...]}`` case ids."""
        return {k: [c.id for c in getattr(self, k)] for k in ("train", "val", "test")}


def split_dataset(root: str | os.PathLike) -> Split:
    """List an ATM'22-layout dataset and split it with :func:`split_sizes`.

    Parameters
    ----------
    root : path-like
        ``imagesTr/ID_0000.nii.gz`` + ``labelsTr/ID.nii.gz``.

    Raises
    ------
    InputError
        An empty dataset, fewer than 2 cases, or a case without its CT or label.
    """
    from deeptree.io import list_cases

    cases = list_cases(root)
    for c in cases:
        if c.image is None or c.label is None:
            missing = "CT" if c.image is None else "label"
            raise InputError(f"{root}: case {c.id} has no {missing} (imagesTr/labelsTr)")
    n_train, n_val, _ = split_sizes(len(cases))
    return Split(cases[:n_train], cases[n_train : n_train + n_val], cases[n_train + n_val :])


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReproduceSettings:
    """Everything a reproduction run fixes.

    Attributes
    ----------
    profile : str
    n_cases : int
        Size of the synthetic cohort generated when no ``data`` folder is given.
    phantom : str
        Phantom profile of that cohort.
    stage1_net, stage1_train : NetworkConfig, TrainConfig
        All stage-1 models (the four variants and clDice) share them.
    stage2_net, stage2_train : NetworkConfig, TrainConfig
        ``deeptree.stage2.stage2_settings(profile)``.
    stage2_data : deeptree.stage2.Stage2DataConfig
    cldice_weight : float
        Factor on the soft clDice term (Shit et al. use alpha = 0.5).
    cldice_iterations : int
        Soft-skeleton iterations of clDice (should reach the largest lumen radius in voxels).
    validate : bool
        Score the validation cases at the end of each training (logged).
    seed : int
        Seeds the synthetic cohort and the training runs.
    """

    profile: str
    n_cases: int
    phantom: str
    stage1_net: NetworkConfig
    stage1_train: TrainConfig
    stage2_net: NetworkConfig
    stage2_train: TrainConfig
    stage2_data: object
    cldice_weight: float = 0.5
    cldice_iterations: int = 3
    validate: bool = True
    seed: int = 0


#: Synthetic cohort size, clDice skeleton iterations and validation per profile (smoke skips
#: the validation inference: its 4-iteration models score nothing worth the time). 9 cpu cases split 5/2/2;
#: 18 standard (0.7 mm) phantoms split 10/4/4 (90 would take ~45 CPU-minutes to generate).
_PROFILE_SIZES: dict[str, dict] = {
    "smoke": {"n_cases": 3, "cldice_iterations": 3, "validate": False},
    "cpu": {"n_cases": 9, "cldice_iterations": 5, "validate": True},
    "gpu": {"n_cases": 18, "cldice_iterations": 10, "validate": True},
}


def reproduce_settings(
    profile: str = "cpu",
    *,
    stage1_iterations: int | None = None,
    stage2_iterations: int | None = None,
    n_cases: int | None = None,
    validate: bool | None = None,
    seed: int = 0,
) -> ReproduceSettings:
    """The :class:`ReproduceSettings` of a run profile, with optional overrides.

    Stage 1 uses ``get_config(profile).stage1_net/stage1_train`` with validation only at the
    end of each run (``validate_every = iterations``: the learning curves are notebook 05's
    subject); stage 2 uses ``deeptree.stage2.stage2_settings(profile)``.

    Parameters
    ----------
    profile : str
        ``smoke``, ``cpu`` or ``gpu``.
    stage1_iterations, stage2_iterations : int, optional
        Training length of every stage-1 model / of the stage-2 model.
    n_cases : int, optional
        Synthetic cohort size.
    validate : bool, optional
        See :class:`ReproduceSettings` (default: the profile's; off for ``smoke``).
    seed : int

    Raises
    ------
    InputError
        Iterations or cohort size below 1.
    """
    from deeptree.stage2 import stage2_settings

    check_profile(profile)
    run = get_config(profile)
    sizes = _PROFILE_SIZES[profile]
    s1 = run.stage1_train
    if stage1_iterations is not None:
        s1 = replace(s1, iterations=int(stage1_iterations))
    net2, s2, data2 = stage2_settings(profile)
    if stage2_iterations is not None:
        s2 = replace(s2, iterations=int(stage2_iterations))
    for name, cfg in (("stage-1", s1), ("stage-2", s2)):
        if cfg.iterations < 1:
            raise InputError(
                f"reproduce: {name} iterations must be at least 1, got {cfg.iterations}"
            )
    s1 = replace(
        s1,
        validate_every=s1.iterations,
        checkpoint_every=min(s1.checkpoint_every, s1.iterations),
        seed=seed,
    )
    s2 = replace(
        s2,
        # stage 2 validates as its profile says: it keeps the best model (deeptree.stage2)
        validate_every=min(s2.validate_every, s2.iterations),
        checkpoint_every=min(s2.checkpoint_every, s2.iterations),
        seed=seed,
    )
    n = int(n_cases) if n_cases is not None else sizes["n_cases"]
    if n < 2:
        raise InputError(f"reproduce: the synthetic cohort needs at least 2 cases, got {n}")
    return ReproduceSettings(
        profile=profile,
        n_cases=n,
        phantom="gpu" if profile == "gpu" else profile,
        stage1_net=run.stage1_net,
        stage1_train=s1,
        stage2_net=net2,
        stage2_train=s2,
        stage2_data=data2,
        cldice_iterations=sizes["cldice_iterations"],
        validate=sizes["validate"] if validate is None else bool(validate),
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# the clDice comparison method
# --------------------------------------------------------------------------------------------
class DiceCEClDiceLoss(torch.nn.Module):
    """DiceCE (``deeptree.losses.Stage1Loss("plain")``, with deep supervision) plus the soft
    clDice loss of Shit et al. (CVPR 2021) on the airway probability.

    ``L = DiceCE + weight * clDice(p_airway, g)``, clDice from MONAI
    (``monai.losses.SoftclDiceLoss``, soft skeletons by iterated min/max pooling), computed on
    the full-resolution output only (the deep-supervision heads get DiceCE). Shit et al.
    combine soft Dice and clDice with alpha = 0.5; here clDice is added to nnU-Net's DiceCE
    so that the comparison differs from nnUNet* by the topology term only.

    Parameters
    ----------
    weight : float
        Factor on the clDice term.
    iterations : int
        Soft-skeleton iterations (at least the largest lumen radius in voxels).

    Notes
    -----
    Called like ``Stage1Loss``: ``loss, parts = criterion(outputs, label, distance)`` with
    ``label`` (B, 1, X, Y, Z) integer classes (``> 0`` is airway); ``distance`` is ignored.
    ``parts`` adds ``"cldice"`` to DiceCE's ``"dice"``, ``"ce"``.
    """

    def __init__(self, weight: float = 0.5, iterations: int = 3):
        from monai.losses import SoftclDiceLoss

        from deeptree.losses import Stage1Loss

        super().__init__()
        self.weight = float(weight)
        self.base = Stage1Loss("plain")
        self.cldice = SoftclDiceLoss(iter_=int(iterations))

    def forward(self, outputs, label: torch.Tensor, distance: torch.Tensor | None = None):
        """Total loss (scalar tensor) and a dict of float parts."""
        total, parts = self.base(outputs, label, None)
        full = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
        prob = torch.softmax(full.float(), dim=1)[:, 1:2]
        cl = self.cldice(prob, (label > 0).float())
        return total + self.weight * cl, {**parts, "cldice": float(cl.detach())}


def cldice_task(
    train_cases,
    val_cases,
    net: NetworkConfig,
    cfg: TrainConfig,
    *,
    weight=0.5,
    iterations=3,
    profile=None,
):
    """The :class:`deeptree.train.TrainingTask` of the clDice comparison model.

    Assembled as ``deeptree.train.stage1_task`` does for ``"plain"`` (same 2-channel network,
    patch dataset and validation), with :class:`DiceCEClDiceLoss` as the loss. The metadata
    keep ``variant="plain"`` (the network, so that ``load_stage1_model`` rebuilds it) and add
    ``loss="dice-ce+cldice"``.

    Parameters
    ----------
    train_cases, val_cases : list of deeptree.data.Stage1Case
    net : NetworkConfig
    cfg : TrainConfig
    weight, iterations : float, int
        :class:`DiceCEClDiceLoss` settings.
    profile : str, optional
    """
    from deeptree.train import TrainingTask, stage1_task

    base = stage1_task(train_cases, val_cases, "plain", net, cfg, profile=profile)
    criterion = DiceCEClDiceLoss(weight, iterations)

    def loss_fn(outputs, batch):
        return criterion(outputs, batch["label"], None)

    meta = {
        **base.meta,
        "loss": "dice-ce+cldice",
        "cldice_weight": float(weight),
        "cldice_iterations": int(iterations),
        "name": "stage 1, clDice",
    }
    return TrainingTask(
        model=base.model, loss_fn=loss_fn, dataset=base.dataset, validate=base.validate, meta=meta
    )


# --------------------------------------------------------------------------------------------
# train or load
# --------------------------------------------------------------------------------------------
def model_dir(models_root: str | os.PathLike, key: str) -> Path:
    """``<models_root>/stage1_<key>`` (``+`` written ``_``) or ``<models_root>/stage2``."""
    name = "stage2" if key == "stage2" else "stage1_" + key.replace("+", "_")
    return Path(models_root) / name


def _finished(path: Path, meta: dict, cfg: TrainConfig) -> bool:
    """True when ``path`` holds a finished run of exactly this model and schedule; False when
    there is none or it is unfinished (resume it); InputError when it is another model."""
    from deeptree.train import _plain, load_checkpoint

    if not path.is_file():
        return False
    state = load_checkpoint(path)
    saved = state.get("meta", {})
    for key, value in _plain(meta).items():
        if saved.get(key) != value:
            raise InputError(
                f"{path}: holds a model with {key}={saved.get(key)!r}, this run needs "
                f"{value!r}; give another --out (or delete that folder)"
            )
    saved_cfg = state.get("train_config", {})
    for key in ("iterations", "batch_size", "learning_rate", "seed"):
        if saved_cfg.get(key) != getattr(cfg, key):
            raise InputError(
                f"{path}: was trained with {key}={saved_cfg.get(key)!r}, this run has "
                f"{getattr(cfg, key)!r}; give another --out (or delete that folder)"
            )
    return int(state.get("iteration", 0)) >= cfg.iterations


def train_or_load(
    task, cfg: TrainConfig, out_dir, *, device=None, progress=True, workers: int = 0
) -> tuple[Path, bool, float]:
    """Train ``task`` into ``out_dir`` unless a finished compatible checkpoint is there.

    ``workers`` DataLoader processes prepare the batches (0: in the training process).

    Returns
    -------
    checkpoint : Path
        ``out_dir/last.pt``.
    trained : bool
        False when an existing checkpoint was reused.
    seconds : float
        Training wall time of this call (0 when reused).
    """
    from deeptree.train import CHECKPOINT_NAME, train

    path = Path(out_dir) / CHECKPOINT_NAME
    if _finished(path, task.meta, cfg):
        return path, False, 0.0
    result = train(
        task, cfg, out_dir, resume=True, device=device, progress=progress, num_workers=workers
    )
    return result.checkpoint, True, float(result.seconds)


def _stage2_sources(paths: Sequence) -> list:
    """``deeptree.stage2.Stage2Source`` of cases (a ``lungsTr/<id>.nii.gz`` beside
    ``labelsTr`` is the fragments' room, as ``deeptree.stage2.load_sources``)."""
    import warnings

    from deeptree.io import load_case, read_nifti
    from deeptree.stage2 import prepare_stage2_source

    out = []
    for p in paths:
        case = load_case(p.image, p.label, case_id=p.id)
        lung = Path(p.label).parent.parent / "lungsTr" / Path(p.label).name
        room = read_nifti(lung).array > 0 if lung.is_file() else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out.append(prepare_stage2_source(case.ct, case.label, case.spacing, p.id, room))
    return out


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def method_ids(stage2: bool = True) -> list[str]:
    """Ids of every evaluated method, in table order: the four variants, then each with
    ``+stage2`` (if ``stage2``), clDice, region growing."""
    from deeptree.losses import VARIANTS

    ids = list(VARIANTS)
    if stage2:
        ids += [v + STAGE2_SUFFIX for v in VARIANTS]
    return ids + [CLDICE, REGION_GROWING]


def evaluate_case(
    case,
    stage1_models: dict,
    stage2,
    *,
    device=None,
    protocol: str = "paper",
) -> tuple[list[dict], list[dict], dict]:
    """Every method on one test case.

    Parameters
    ----------
    case : deeptree.io.Case
        CT (HU), binary airway label, spacing (mm).
    stage1_models : dict
        Method id -> ``(model, meta)`` (``load_stage1_model`` output). Ids that are a stage-1
        variant of ``deeptree.losses.VARIANTS`` are also scored after stage 2.
    stage2 : (model, meta) or None
        The stage-2 model (``load_stage2_model`` output); None: no ``+stage2`` rows.
    device : optional
    protocol : {"paper", "atm22"}

    Returns
    -------
    rows : list of dict
        One per method: ``case``, ``method``, ``BD``, ``TLD``, ``precision``, ``DSC``
        (fractions), ``n_components`` (of the raw prediction), ``seconds``.
    generation_rows : list of dict
        ``deeptree.metrics.generation_metrics`` rows with ``case`` and ``method``.
    masks : dict
        Method id -> uint8 (I, J, K) prediction; ``"_repair"`` -> the
        ``deeptree.pipeline.SegmentationResult`` of ``amc+gul`` + stage 2 (if run).
    """
    from deeptree.baselines import region_growing
    from deeptree.inference import predict_stage1
    from deeptree.losses import VARIANTS
    from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth
    from deeptree.pipeline import repair

    gt = np.asarray(case.label) > 0
    reference = prepare_ground_truth(gt, case.spacing, name=f"{case.id} label")
    masks: dict = {}
    seconds: dict[str, float] = {}
    for key, (model, meta) in stage1_models.items():
        t0 = time.perf_counter()
        pred = predict_stage1(
            model,
            case.ct,
            meta["patch_size"],
            overlap=meta.get("overlap", 0.5),
            device=device,
            name=f"{case.id} CT",
        )
        masks[key], seconds[key] = pred.mask, time.perf_counter() - t0
        if key in VARIANTS and stage2 is not None:
            t1 = time.perf_counter()
            result = repair(pred.mask, case.ct, stage2, device=device, name=f"{case.id} CT")
            masks[key + STAGE2_SUFFIX] = result.mask
            seconds[key + STAGE2_SUFFIX] = seconds[key] + time.perf_counter() - t1
            if key == "amc+gul":
                masks["_repair"] = result
    t0 = time.perf_counter()
    try:
        masks[REGION_GROWING] = region_growing(case.ct, case.spacing)
    except InputError:  # no trachea found: the baseline returns nothing, scored as such
        masks[REGION_GROWING] = np.zeros(gt.shape, np.uint8)
    seconds[REGION_GROWING] = time.perf_counter() - t0
    rows, generation_rows = [], []
    for method in [m for m in method_ids(True) if m in masks]:
        m = airway_metrics(masks[method], reference, case.spacing, protocol)
        rows.append(
            {
                "case": case.id,
                "method": method,
                **{k: float(m[k]) for k in (*TABLE_METRICS, "DSC")},
                "n_components": int(m["n_components"]),
                "seconds": round(seconds[method], 3),
            }
        )
        for g in generation_metrics(masks[method], reference, case.spacing):
            generation_rows.append({"case": case.id, "method": method, **g})
    return rows, generation_rows, masks


def summarize_methods(rows: Sequence[dict]) -> dict[str, dict]:
    """``{method: deeptree.metrics.summarize(...)}`` over the cases (BD, TLD, precision, DSC;
    fractions, sample standard deviation)."""
    from deeptree.metrics import summarize

    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        out[method] = summarize(
            [r for r in rows if r["method"] == method], keys=(*TABLE_METRICS, "DSC")
        )
    return out


def _pct(stats: dict) -> str:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def _paper(values: dict | None, key: str) -> str:
    if values is None:
        return "—"
    mean, std = values[key]
    return f"{mean:.1f} ± {std:.1f}"


def table2_rows(summary: dict) -> list[dict]:
    """The ablation (paper Table 2): one row per (variant, stage 2) present in ``summary``.

    Returns
    -------
    list of dict
        ``method``, ``AMC``, ``GUL``, ``stage2`` (bools), ``n`` (test cases), ``BD``,
        ``TLD``, ``precision`` (ours, "mean ± std" in percent) and ``paper BD``, ``paper
        TLD``, ``paper precision`` (:data:`PAPER_TABLE2`, percent, real data).
    """
    rows = []
    for with_stage2 in (False, True):
        for variant, (amc, gul) in VARIANT_FLAGS.items():
            method = variant + (STAGE2_SUFFIX if with_stage2 else "")
            if method not in summary:
                continue
            s = summary[method]
            rows.append(
                {
                    "method": method,
                    "AMC": amc,
                    "GUL": gul,
                    "stage2": with_stage2,
                    "n": s["BD"]["n"],
                    **{k: _pct(s[k]) for k in TABLE_METRICS},
                    **{
                        f"paper {k}": _paper(PAPER_TABLE2[(variant, with_stage2)], k)
                        for k in TABLE_METRICS
                    },
                }
            )
    return rows


def table1_rows(summary: dict) -> list[dict]:
    """The comparison (paper Table 1) for the methods built here, beside the paper's row of
    the same method (:data:`TABLE1_ROWS`).

    Returns
    -------
    list of dict
        ``method`` (id), ``name``, ``n``, ``BD``, ``TLD``, ``precision`` (ours, percent),
        ``paper method`` and ``paper BD``/``TLD``/``precision`` ("—" where the paper has no
        such row).
    """
    rows = []
    for method, name, paper_name in TABLE1_ROWS:
        if method not in summary:
            continue
        s = summary[method]
        paper = PAPER_TABLE1.get(paper_name) if paper_name else None
        rows.append(
            {
                "method": method,
                "name": name,
                "n": s["BD"]["n"],
                **{k: _pct(s[k]) for k in TABLE_METRICS},
                "paper method": paper_name or "—",
                **{f"paper {k}": _paper(paper, k) for k in TABLE_METRICS},
            }
        )
    return rows


def paper_table1_rows() -> list[dict]:
    """All rows of the paper's Table 1 as published (percent, real data)."""
    return [
        {"method": name, **{k: _paper(v, k) for k in TABLE_METRICS}}
        for name, v in PAPER_TABLE1.items()
    ]


#: Comparisons behind "does each component help": (component, without, with).
EFFECT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("AMC", "plain", "amc"),
    ("AMC", "gul", "amc+gul"),
    ("GUL", "plain", "gul"),
    ("GUL", "amc", "amc+gul"),
    *(("stage 2", v, v + STAGE2_SUFFIX) for v in VARIANT_FLAGS),
)


def _paper_mean(method: str, key: str) -> float:
    stage2 = method.endswith(STAGE2_SUFFIX)
    return PAPER_TABLE2[(method.removesuffix(STAGE2_SUFFIX), stage2)][key][0]


def component_effects(summary: dict) -> list[dict]:
    """Change of mean TLD and BD when a component is added, ours against the paper's.

    Parameters
    ----------
    summary : dict
        :func:`summarize_methods` output.

    Returns
    -------
    list of dict, one per pair of :data:`EFFECT_PAIRS` present in ``summary``:
    ``component``, ``without``, ``with``, ``dTLD``, ``dBD``, ``dprecision`` (ours, percentage
    points), ``paper dTLD``, ``paper dBD``, ``paper dprecision`` (percentage points, real
    data), ``TLD improves``, ``BD improves`` (ours: strictly higher mean), ``n`` (test cases).
    """
    out = []
    for component, without, with_ in EFFECT_PAIRS:
        if without not in summary or with_ not in summary:
            continue
        row = {
            "component": component,
            "without": without,
            "with": with_,
            "n": summary[with_]["BD"]["n"],
        }
        for key in TABLE_METRICS:
            row[f"d{key}"] = round(
                100 * (summary[with_][key]["mean"] - summary[without][key]["mean"]), 2
            )
            row[f"paper d{key}"] = round(_paper_mean(with_, key) - _paper_mean(without, key), 2)
        row["TLD improves"] = bool(row["dTLD"] > 0)
        row["BD improves"] = bool(row["dBD"] > 0)
        out.append(row)
    return out


def effect_statements(effects: Sequence[dict]) -> list[str]:
    """One sentence per :func:`component_effects` row, saying what we measured and what the
    paper reports, whichever way it goes."""
    lines = []
    for e in effects:
        verdict = []
        for key in ("TLD", "BD"):
            word = "improves" if e[f"{key} improves"] else "does not improve"
            verdict.append(
                f"{word} {key} ({e[f'd{key}']:+.1f} points; paper {e[f'paper d{key}']:+.1f})"
            )
        lines.append(
            f"{e['component']} ({e['without']} -> {e['with']}, {e['n']} synthetic test cases): "
            + " and ".join(verdict)
            + f"; precision {e['dprecision']:+.1f} points (paper {e['paper dprecision']:+.1f})."
        )
    return lines


def generation_curves(generation_rows: Sequence[dict]) -> list[dict]:
    """Per-generation TLD and BD per method, pooled over the test cases (skeleton voxels and
    branches summed before dividing).

    Returns
    -------
    list of dict
        ``method``, ``generation``, ``TLD``, ``BD`` (fractions), ``skeleton_total``,
        ``branches_total``, sorted by method then generation.
    """
    pooled: dict[tuple[str, int], list[int]] = {}
    for r in generation_rows:
        acc = pooled.setdefault((r["method"], int(r["generation"])), [0, 0, 0, 0])
        acc[0] += int(r["skeleton_covered"])
        acc[1] += int(r["skeleton_total"])
        acc[2] += int(r["branches_detected"])
        acc[3] += int(r["branches_total"])
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in generation_rows))}
    out = []
    for (method, gen), (cov, tot, det, btot) in sorted(
        pooled.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])
    ):
        out.append(
            {
                "method": method,
                "generation": gen,
                "TLD": cov / tot if tot else 0.0,
                "BD": det / btot if btot else 0.0,
                "skeleton_total": tot,
                "branches_total": btot,
            }
        )
    return out


def method_label(method: str) -> str:
    """A readable name of a method id (``"amc+gul+stage2"`` -> ``"nnUNet* + AMC + GUL + stage 2"``)."""
    if method == REGION_GROWING:
        return "region growing"
    if method == CLDICE:
        return "clDice"
    base = method.removesuffix(STAGE2_SUFFIX)
    amc, gul = VARIANT_FLAGS[base]
    parts = ["nnUNet*"] + (["AMC"] if amc else []) + (["GUL"] if gul else [])
    if method.endswith(STAGE2_SUFFIX):
        parts.append("stage 2")
    return " + ".join(parts)


def plot_generation_curves(
    curves: Sequence[dict], methods: Sequence[str] | None = None, title: str | None = None
):
    """TLD and BD per GT generation, one line per method (matplotlib Figure, two panels)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = (
        list(methods) if methods is not None else list(dict.fromkeys(c["method"] for c in curves))
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in methods:
        mine = [c for c in curves if c["method"] == method]
        if not mine:
            continue
        gens = [c["generation"] for c in mine]
        style = "--" if method.endswith(STAGE2_SUFFIX) else "-"
        for ax, key in zip(axes, ("TLD", "BD"), strict=True):
            ax.plot(
                gens,
                [100 * c[key] for c in mine],
                style,
                marker="o",
                ms=3,
                label=method_label(method),
            )
    for ax, key in zip(
        axes,
        ("tree length detected per generation", "branches detected per generation"),
        strict=True,
    ):
        ax.set(xlabel="generation (0 = trachea)", ylabel="%", title=key, ylim=(-2, 102))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Write dict rows as CSV (header = keys of the first row), atomically."""
    buffer = _io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return _write_text(Path(path), buffer.getvalue())


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of dict rows (booleans as ✓ / —)."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns) if columns is not None else list(rows[0])

    def cell(v):
        if isinstance(v, bool):
            return "✓" if v else "—"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tables_markdown(result: ReproduceResult) -> str:
    """The report of a run: both tables with the paper's numbers beside ours, the component
    effects, the split and the training lengths (markdown)."""
    s = result.settings
    t2_cols = [
        "method",
        "AMC",
        "GUL",
        "stage2",
        "n",
        "BD",
        "TLD",
        "precision",
        "paper BD",
        "paper TLD",
        "paper precision",
    ]
    t1_cols = [
        "name",
        "n",
        "BD",
        "TLD",
        "precision",
        "paper method",
        "paper BD",
        "paper TLD",
        "paper precision",
    ]
    parts = [
        f"# DeepTree reproduction ({s.profile} profile)\n",
        f"Data: {result.data_label}. Split (paper proportions 50/20/20, rounded): "
        f"{len(result.split.train)} training, {len(result.split.val)} validation, "
        f"{len(result.split.test)} test cases. Stage 1: {s.stage1_train.iterations} iterations of batch "
        f"{s.stage1_train.batch_size}, patch {tuple(s.stage1_net.patch_size)}, filters "
        f"{tuple(s.stage1_net.filters)}; stage 2: {s.stage2_train.iterations} iterations of batch "
        f"{s.stage2_train.batch_size}, patch {tuple(s.stage2_net.patch_size)}. Metrics: paper protocol "
        "(trachea and main bronchi excluded), percent, mean ± sample std over the test cases.\n",
        f"Columns `paper ...`: **{PAPER_SOURCE}** as published, not ours.\n",
        "## Ablation (paper Table 2)\n",
        markdown_table(result.table2, t2_cols),
        "## Comparison (paper Table 1, methods built here)\n",
        markdown_table(result.table1, t1_cols),
        f"The paper's full Table 1 ({PAPER_SOURCE}):\n",
        markdown_table(paper_table1_rows()),
        "## Does each component help? (synthetic test cases)\n",
        "\n".join(f"* {line}" for line in effect_statements(result.effects)) + "\n",
    ]
    return "\n".join(parts)


@dataclass
class ReproduceResult:
    """Everything :func:`reproduce` produced.

    Attributes
    ----------
    settings : ReproduceSettings
    data_label : str
        "synthetic cohort (...)" or the data folder.
    split : Split
    rows : list of dict
        Per case and method (:func:`evaluate_case`).
    generation_rows : list of dict
    summary : dict
        :func:`summarize_methods`.
    table1, table2 : list of dict
        :func:`table1_rows`, :func:`table2_rows`.
    effects : list of dict
        :func:`component_effects`.
    curves : list of dict
        :func:`generation_curves`.
    figure_case : dict
        First test case: ``id``, ``ct``, ``gt``, ``spacing``, ``masks`` (method -> mask),
        ``repair`` (SegmentationResult of amc+gul + stage 2 or None).
    checkpoints : dict
        Model name -> checkpoint path.
    trained : dict
        Model name -> True if trained in this call, False if reused.
    seconds : dict
        Wall time per phase (``data``, ``train <name>``, ``evaluate``, ``total``).
    paths : dict
        Written files (tables, figures).
    """

    settings: ReproduceSettings
    data_label: str
    split: Split
    rows: list
    generation_rows: list
    summary: dict
    table1: list
    table2: list
    effects: list
    curves: list
    figure_case: dict
    checkpoints: dict
    trained: dict
    seconds: dict
    paths: dict = field(default_factory=dict)

    def results(self) -> dict:
        """Key figures for ``deeptree.report.save_results`` (flat, JSON-friendly)."""
        s = self.settings
        out = {
            "profile": s.profile,
            "data": self.data_label,
            "split": f"{len(self.split.train)}/{len(self.split.val)}/{len(self.split.test)}",
            "stage1_iterations": s.stage1_train.iterations,
            "stage2_iterations": s.stage2_train.iterations,
            "models_reused": sorted(k for k, v in self.trained.items() if not v),
        }
        for row in self.table2:
            for key in TABLE_METRICS:
                out[f"T2 {method_label(row['method'])} {key}"] = row[key]
        for row in self.table1:
            if row["method"] in (CLDICE, REGION_GROWING):
                for key in TABLE_METRICS:
                    out[f"T1 {method_label(row['method'])} {key}"] = row[key]
        for e in self.effects:
            out[f"{e['component']} {e['without']}->{e['with']} dTLD/dBD (points)"] = (
                f"{e['dTLD']:+.1f} / {e['dBD']:+.1f}"
            )
        out["seconds"] = {k: round(v, 1) for k, v in self.seconds.items()}
        out["tables"] = str(self.paths.get("tables_md", ""))
        return out


def write_outputs(result: ReproduceResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the tables (CSV + markdown), per-case and per-generation CSVs, the curve and MIP
    figures and ``results.json`` under ``out_dir`` (every file atomically).

    Returns
    -------
    dict name -> Path
    """
    import matplotlib.pyplot as plt

    from deeptree.viz import comparison_mip

    out = Path(out_dir)
    paths = {
        "table1_csv": write_csv(out / "tables" / "table1_comparison.csv", result.table1),
        "table2_csv": write_csv(out / "tables" / "table2_ablation.csv", result.table2),
        "paper_table1_csv": write_csv(out / "tables" / "paper_table1.csv", paper_table1_rows()),
        "effects_csv": write_csv(out / "tables" / "component_effects.csv", result.effects),
        "per_case_csv": write_csv(out / "tables" / "per_case.csv", result.rows),
        "generations_csv": write_csv(out / "tables" / "per_generation.csv", result.curves),
    }
    paths["tables_md"] = _write_text(out / "tables" / "tables.md", tables_markdown(result))
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig = plot_generation_curves(
        result.curves, title=f"per-generation detection, {len(result.split.test)} test cases"
    )
    paths["curves_png"] = atomic_write(
        figures / "generation_curves.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png")
    )
    plt.close(fig)
    fc = result.figure_case
    shown = [m for m, _, _ in TABLE1_ROWS if m in fc["masks"]]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6), squeeze=False)
    for ax, method in zip(axes[0], shown, strict=True):
        comparison_mip(
            fc["masks"][method], fc["gt"], fc["spacing"], ax=ax, title=method_label(method)
        )
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(
        f"{fc['id']}: true positive red, false negative blue, false positive green (coronal MIP)"
    )
    fig.tight_layout()
    paths["fig3_mip_png"] = atomic_write(
        figures / "fig3_mip.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png")
    )
    plt.close(fig)
    result.paths.update(paths)
    text = json.dumps(_jsonable(result.results()), indent=2)
    paths["results_json"] = _write_text(out / "results.json", text + "\n")
    result.paths.update(paths)
    return paths


def percent_rows(rows: Sequence[dict], keys: Sequence[str] = (*TABLE_METRICS, "DSC")) -> list[dict]:
    """Copies of ``rows`` with the fraction columns ``keys`` as percent strings (``"87.5"``;
    ``"—"`` for None), for display."""
    return [
        {k: ("—" if v is None else f"{100 * v:.1f}") if k in keys else v for k, v in r.items()}
        for r in rows
    ]


def _jsonable(value):
    from deeptree.report import _jsonable as convert

    return convert(value)


def render_figures(
    result: ReproduceResult,
    out_dir: str | os.PathLike,
    methods: Sequence[str] | None = None,
    size=(500, 400),
) -> dict[str, np.ndarray]:
    """napari screenshots (needs a display, e.g. ``xvfb-run``): the paper's Fig. 3 comparison
    (true positive red, false negative blue, false positive green) of each Table-1 method on
    the first test case, and the stage-1 breakages of AMC + GUL before and after stage 2
    (``deeptree.pipeline.repair_labels`` colours). Written as PNG under ``out_dir/figures``.

    Parameters
    ----------
    result : ReproduceResult
    out_dir : path-like
    methods : sequence of str, optional
        Method ids to render (default: the Table-1 methods).
    size : (height, width)

    Returns
    -------
    dict name -> RGBA picture (uint8 (H, W, 4)); names ``fig3 <method>``, ``repair before``,
    ``repair after``.
    """
    from deeptree import napari_viz
    from deeptree.pipeline import REPAIR_COLORS, repair_labels
    from deeptree.viz import COMPARISON_COLORS, comparison_labels

    fc = result.figure_case
    figures = Path(out_dir) / "figures"
    methods = [m for m, _, _ in TABLE1_ROWS] if methods is None else list(methods)
    pictures = {}
    for method in [m for m in methods if m in fc["masks"]]:
        layer = napari_viz.LabelLayer(
            method, comparison_labels(fc["masks"][method], fc["gt"]), COMPARISON_COLORS
        )
        pictures[f"fig3 {method}"] = napari_viz.render_3d([layer], fc["spacing"], size=size)
        napari_viz.save_png(
            pictures[f"fig3 {method}"], figures / f"fig3_{method.replace('+', '_')}.png"
        )
    if fc.get("repair") is not None:
        before, after = repair_labels(fc["repair"])
        for name, labels in (("repair before", before), ("repair after", after)):
            layer = napari_viz.LabelLayer(name, labels, REPAIR_COLORS)
            pictures[name] = napari_viz.render_3d([layer], fc["spacing"], size=size)
            napari_viz.save_png(pictures[name], figures / f"{name.replace(' ', '_')}.png")
    return pictures


# --------------------------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------------------------
def reproduce(
    profile: str = "cpu",
    out: str | os.PathLike = "runs/reproduce",
    data: str | os.PathLike | None = None,
    *,
    settings: ReproduceSettings | None = None,
    device=None,
    progress: bool = True,
    stage2: bool = True,
    workers: int | None = None,
) -> ReproduceResult:
    """Split, train or load every model, predict the test cases, evaluate, write tables.

    Parameters
    ----------
    profile : str
        ``smoke``, ``cpu`` or ``gpu`` (ignored when ``settings`` is given).
    out : path-like
        Run folder: ``cohort/`` (synthetic data), ``cache/``, ``models/``, ``tables/``,
        ``figures/``, ``results.json``.
    data : path-like, optional
        An ATM'22-layout folder (``imagesTr`` + ``labelsTr``); None: a synthetic cohort of
        ``settings.n_cases`` phantoms is generated into ``out/cohort`` (resumably) and used
        through the same code path.
    settings : ReproduceSettings, optional
        Default :func:`reproduce_settings(profile) <reproduce_settings>`.
    device : optional
        Default: CUDA if available.
    progress : bool
        Progress bars.
    stage2 : bool
        Train stage 2 and score the ``+stage2`` rows (the ablation's lower half and DeepTree).
    workers : int, optional
        DataLoader worker processes of every training run. Default: 0 on a CPU (the
        cores are busy with the network), ``min(12, cores - 2)`` on a GPU, where patch
        sampling and stage-2 simulations must keep up with the network.

    Returns
    -------
    ReproduceResult (its files are already written, see ``result.paths``)

    Raises
    ------
    InputError
        Bad data folder (see :func:`split_dataset`), or an incompatible checkpoint in
        ``out/models``.
    """
    from tqdm.auto import tqdm

    from deeptree.data import load_cohort
    from deeptree.inference import load_stage1_model
    from deeptree.io import load_case
    from deeptree.losses import VARIANTS
    from deeptree.pipeline import load_stage2_model
    from deeptree.stage2 import stage2_task
    from deeptree.train import selected_checkpoint, stage1_task

    t_start = time.perf_counter()
    settings = settings if settings is not None else reproduce_settings(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(12, (os.cpu_count() or 1) - 2))
    seconds: dict[str, float] = {}

    if data is None:
        from deeptree.phantom import generate_cohort

        data = out / "cohort"
        generate_cohort(
            data, settings.phantom, settings.n_cases, seed=settings.seed, progress=progress
        )
        data_label = f"synthetic cohort ({settings.n_cases} {settings.phantom} phantoms, seed {settings.seed})"
    else:
        data_label = str(data)
    split = split_dataset(data)
    prepared = {c.id: c for c in load_cohort(data, out / "cache", progress=progress)}
    train_cases = [prepared[c.id] for c in split.train]
    val_cases = [prepared[c.id] for c in split.val] if settings.validate else []
    seconds["data"] = time.perf_counter() - t_start
    train_ids = [c.id for c in split.train]

    models_root = out / "models"
    checkpoints, trained = {}, {}
    for key in (*VARIANTS, CLDICE):
        if key == CLDICE:
            task = cldice_task(
                train_cases, val_cases, settings.stage1_net, settings.stage1_train,
                weight=settings.cldice_weight, iterations=settings.cldice_iterations, profile=settings.profile,
            )  # fmt: skip
        else:
            task = stage1_task(
                train_cases,
                val_cases,
                key,
                settings.stage1_net,
                settings.stage1_train,
                profile=settings.profile,
            )
            task.meta["loss"] = key
        task.meta["train_cases"] = train_ids
        path, did_train, secs = train_or_load(
            task,
            settings.stage1_train,
            model_dir(models_root, key),
            device=device,
            progress=progress,
            workers=workers,
        )
        checkpoints[key], trained[key], seconds[f"train {key}"] = path, did_train, secs
    models = {key: load_stage1_model(path, device) for key, path in checkpoints.items()}

    stage2_model = None
    if stage2:
        sources = _stage2_sources(split.train)
        val_sources = _stage2_sources(split.val) if settings.validate else []
        task = stage2_task(
            sources, val_sources, settings.stage2_net, settings.stage2_train, data=settings.stage2_data,
            breakage=get_config(settings.profile).breakage, attention=get_config(settings.profile).attention,
            profile=settings.profile,
        )  # fmt: skip
        task.meta["train_cases"] = train_ids
        path, did_train, secs = train_or_load(
            task,
            settings.stage2_train,
            model_dir(models_root, "stage2"),
            device=device,
            progress=progress,
            workers=workers,
        )
        path = selected_checkpoint(path.parent)  # best.pt when validated, else last.pt
        checkpoints["stage2"], trained["stage2"], seconds["train stage2"] = path, did_train, secs
        stage2_model = load_stage2_model(path, device)

    t_eval = time.perf_counter()
    rows, generation_rows, figure_case = [], [], {}
    for i, paths in enumerate(tqdm(split.test, desc="evaluate", disable=not progress)):
        case = load_case(paths.image, paths.label, case_id=paths.id)
        case_rows, case_generations, masks = evaluate_case(
            case, models, stage2_model, device=device
        )
        rows += case_rows
        generation_rows += case_generations
        if i == 0:  # the figures show the first test case
            figure_case = {
                "id": case.id,
                "ct": case.ct,
                "gt": np.asarray(case.label) > 0,
                "spacing": case.spacing,
                "masks": {k: v for k, v in masks.items() if not k.startswith("_")},
                "repair": masks.get("_repair"),
            }
    seconds["evaluate"] = time.perf_counter() - t_eval
    summary = summarize_methods(rows)
    result = ReproduceResult(
        settings=settings,
        data_label=data_label,
        split=split,
        rows=rows,
        generation_rows=generation_rows,
        summary=summary,
        table1=table1_rows(summary),
        table2=table2_rows(summary),
        effects=component_effects(summary),
        curves=generation_curves(generation_rows),
        figure_case=figure_case,
        checkpoints=checkpoints,
        trained=trained,
        seconds=seconds,
    )
    seconds["total"] = time.perf_counter() - t_start
    write_outputs(result, out)
    return result


# --------------------------------------------------------------------------------------------
# real CT samples
# --------------------------------------------------------------------------------------------
#: The real CT samples the trained models are run on (folder under ``deeptree.io.SAMPLES_DIR``).
REAL_SAMPLES: tuple[str, ...] = ("totalseg_chest", "cip_ct64")


def run_on_real_ct(
    checkpoints: dict,
    samples_dir: str | os.PathLike | None = None,
    *,
    samples: Sequence[str] = REAL_SAMPLES,
    device=None,
) -> tuple[list[dict], dict]:
    """Run nnUNet* (plain, stage 1) and DeepTree (AMC + GUL + stage 2) of a reproduction on the
    real CT samples, and score them where a label exists.

    Nothing is resampled: the models see the real CT at its own voxel size (1.5 mm for
    ``totalseg_chest``, ~4 mm for ``cip_ct64``), whatever the phantoms' spacing was. The
    ``cip_ct64`` label is coarse (a few generations at 4 mm): when its parse has no branch
    beyond the main bronchi, the paper protocol is undefined and the ``atm22`` protocol (no
    exclusion) is used; the row says which.

    Parameters
    ----------
    checkpoints : dict
        ``ReproduceResult.checkpoints``: ``"plain"``, ``"amc+gul"`` and (optional) ``"stage2"``.
    samples_dir : path-like, optional
        Default ``deeptree.io.SAMPLES_DIR``.
    samples : sequence of str
        Sample folders (each with ``ct.nii.gz``, optionally ``airway.nii.gz``).
    device : optional

    Returns
    -------
    rows : list of dict
        ``sample``, ``method``, ``spacing`` (mm), ``voxels`` (predicted, final mask),
        ``components`` (of the stage-1 mask), ``volume_ml``, and ``BD``, ``TLD``,
        ``precision``, ``DSC``, ``protocol`` where a label exists (else None).
    masks : dict
        sample -> ``{"ct", "spacing", "label" (or None), method -> mask}``.
    """
    from deeptree.attention import label_components
    from deeptree.inference import load_stage1_model
    from deeptree.io import SAMPLES_DIR, read_nifti
    from deeptree.metrics import airway_metrics, prepare_ground_truth
    from deeptree.pipeline import load_stage2_model, segment

    folder = Path(samples_dir) if samples_dir is not None else SAMPLES_DIR
    plain = load_stage1_model(checkpoints["plain"], device or "cpu")
    deeptree_s1 = load_stage1_model(checkpoints["amc+gul"], device or "cpu")
    stage2 = (
        load_stage2_model(checkpoints["stage2"], device or "cpu")
        if "stage2" in checkpoints
        else None
    )
    rows, masks = [], {}
    for name in samples:
        ct = read_nifti(folder / name / "ct.nii.gz")
        label_path = folder / name / "airway.nii.gz"
        label = read_nifti(label_path).array > 0 if label_path.is_file() else None
        reference = (
            prepare_ground_truth(label, ct.spacing, name=str(label_path))
            if label is not None
            else None
        )
        masks[name] = {"ct": ct.array, "spacing": ct.spacing, "label": label}
        runs = {
            "nnUNet*": (plain, None),
            "DeepTree" if stage2 is not None else "nnUNet* + AMC + GUL": (deeptree_s1, stage2),
        }
        for method, (model, connector) in runs.items():
            seg = segment(
                ct.array,
                model,
                connector,
                ct.spacing,
                affine=ct.affine,
                device=device,
                name=str(folder / name / "ct.nii.gz"),
            )
            mask = seg.mask if connector is not None else seg.stage1_mask
            masks[name][method] = mask
            row = {
                "sample": name,
                "method": method,
                "spacing": tuple(round(s, 2) for s in ct.spacing),
                "voxels": int(np.count_nonzero(mask)),
                "volume_ml": round(float(np.count_nonzero(mask) * np.prod(ct.spacing) / 1000), 2),
                "components": int(label_components(seg.stage1_mask)[1]),
            }
            if reference is not None:
                try:
                    m, protocol = airway_metrics(mask, reference, ct.spacing, "paper"), "paper"
                except InputError:  # coarse label: nothing beyond the main bronchi
                    m, protocol = airway_metrics(mask, reference, ct.spacing, "atm22"), "atm22"
                row.update({k: float(m[k]) for k in (*TABLE_METRICS, "DSC")}, protocol=protocol)
            else:
                row.update({k: None for k in (*TABLE_METRICS, "DSC")}, protocol=None)
            rows.append(row)
    return rows, masks
