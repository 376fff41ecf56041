"""Run profiles and the paper's defaults, as data.

One :class:`RunConfig` per profile is used by the CLI and the notebooks
(papermill parameter ``profile``):

========  =====================================================  =========================
profile   for                                                    cost
========  =====================================================  =========================
smoke     CI: every notebook in well under a minute of compute   tiny phantoms, tiny nets
cpu       a reader on a laptop: minutes per notebook             small phantoms and nets
gpu       reproduction on one GPU with the paper's settings      standard cohort, hours
========  =====================================================  =========================

Each part of the package owns a small frozen dataclass here; modules read the
section they need (``get_config("cpu").attention.alpha``). Values that come from
the paper say so in a comment. Every other table that changes with the profile is here too:
the stage-1 variants (:data:`VARIANTS`), stage-2 training data (:func:`stage2_settings`), the
notebooks' cohort sizes (:data:`NOTEBOOK_COHORT`), the reproduction
(:func:`reproduce_settings`); the phantoms' own table is ``deeptree.phantom_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deeptree.io import InputError

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")


# --------------------------------------------------------------------------------------------
# stage-1 variants (the paper's Tables 1 and 2)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One stage-1 model of the paper's comparisons: which losses it trains with.

    Attributes
    ----------
    name : str
        Its id (``"plain"``, ``"amc"``, ``"gul"``, ``"amc+gul"``, ``"cldice"``).
    label : str
        Readable name in tables and figures.
    amc : bool
        Anatomy-aware multi-class labels (4 output channels instead of 2).
    gul : bool
        General Union Loss added on the union of the airway classes.
    cldice : bool
        Soft clDice added to DiceCE (``deeptree.stage1.losses.DiceCEClDiceLoss``).
    """

    name: str
    label: str
    amc: bool
    gul: bool
    cldice: bool = False

    @property
    def out_channels(self) -> int:
        """Network output channels: 4 with AMC (background + 3 classes), else 2."""
        return 4 if self.amc else 2


#: Every stage-1 model the comparisons train, by id.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("plain", "nnUNet*", amc=False, gul=False),
        Variant("amc", "nnUNet* + AMC", amc=True, gul=False),
        Variant("gul", "nnUNet* + GUL", amc=False, gul=True),
        Variant("amc+gul", "nnUNet* + AMC + GUL", amc=True, gul=True),
        Variant("cldice", "clDice", amc=False, gul=False, cldice=True),
    )
}

#: The paper's four loss variants of ``deeptree.stage1.losses.Stage1Loss`` (Table 2), in the
#: table's order; clDice has a loss of its own.
LOSS_VARIANTS: tuple[str, ...] = tuple(v.name for v in VARIANTS.values() if not v.cldice)

#: Id of the clDice comparison model.
CLDICE: str = VARIANTS["cldice"].name


def check_variant(variant: str) -> str:
    """Return ``variant`` if it is one of :data:`LOSS_VARIANTS`, else raise
    :class:`~deeptree.io.InputError`."""
    if variant not in LOSS_VARIANTS:
        raise InputError(
            f"unknown stage-1 variant {variant!r}: choose one of {', '.join(LOSS_VARIANTS)}"
        )
    return variant


def n_output_channels(variant: str) -> int:
    """Network output channels for a loss variant: 4 with AMC (background + 3 classes), else 2."""
    return VARIANTS[check_variant(variant)].out_channels


def uses_gul(variant: str) -> bool:
    """True for the loss variants that add the General Union Loss (``"gul"``, ``"amc+gul"``)."""
    return VARIANTS[check_variant(variant)].gul


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not one of :data:`PROFILES`."""


def check_profile(profile: str) -> str:
    """Return ``profile`` if it names a known run profile, else raise.

    Parameters
    ----------
    profile : str
        One of ``"smoke"``, ``"cpu"``, ``"gpu"``.

    Raises
    ------
    UnknownProfileError
        With the list of valid names.
    """
    if profile not in PROFILES:
        raise UnknownProfileError(
            f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}"
        )
    return profile


# --- anatomy and tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class AnatomyConfig:
    """Anatomy-aware class definition (paper Sec. 2.1)."""

    small_diameter_mm: float = 2.0  # paper: branch -> class 3 if mean lumen diameter <= 2 mm
    central_max_generation: int = 1  # generations 0 (trachea) and 1 (main bronchi) -> class 1


# --- breakage simulation and attention -------------------------------------------------------
@dataclass(frozen=True)
class BreakageConfig:
    """Breakage simulation on ground truth (paper Sec. 2.3)."""

    branch_fraction: float = 0.5  # paper: a random 50% of peripheral branches
    run_fraction: tuple[float, float] = (0.1, 0.3)  # paper: 10%-30% of the branch skeleton
    min_generation: int = 3  # peripheral = leaf branch of generation >= 3 (docs/design.md)


@dataclass(frozen=True)
class AttentionConfig:
    """Breakage attention map (paper Eq. 2)."""

    alpha: float = 5.0  # paper: alpha = 5, in voxels
    centre_threshold: float = 0.5


# --- stage 1 and stage 2 ---------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkConfig:
    """A DynUNet configuration (3 downsamplings, 4 resolution levels as in the paper)."""

    filters: tuple[int, ...] = (32, 64, 128, 256)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    deep_supervision: bool = True
    inference_overlap: float = 0.5  # sliding-window overlap (nnU-Net: 0.5, Gaussian blending)


@dataclass(frozen=True)
class TrainConfig:
    """Training loop settings (nnU-Net defaults where the paper says 'default nnUNet')."""

    iterations: int = 500 * 250  # paper: 500 epochs x 250 iterations (nnU-Net epoch) = 125,000
    batch_size: int = 2
    learning_rate: float = 0.01  # nnU-Net SGD, momentum 0.99, Nesterov, poly decay 0.9
    validate_every: int = 250
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA only
    momentum: float = 0.99  # nnU-Net SGD
    weight_decay: float = 3e-5  # nnU-Net SGD
    poly_exponent: float = 0.9  # nnU-Net: lr = lr0 (1 - it / iterations)^0.9
    grad_clip: float = 12.0  # nnU-Net clips the gradient norm at 12
    checkpoint_every: int = 250  # iterations between resume checkpoints (and at the end)
    # nnU-Net's oversample_foreground_percent: this share of each stage-1 batch is forced
    oversample_foreground: float = 0.33  # foreground (stage1.data.Stage1PatchDataset)
    # the older class-ratio sampler (anywhere, class 1, 2, 3), kept for the benchmarks only
    patch_class_ratios: tuple[float, float, float, float] = (0.33, 0.17, 0.2, 0.3)
    val_cases: int = 2  # cases of the cohort held out for validation during training
    # None: nnU-Net's output initialisation (the paper's); p: the heads start at foreground
    # probability p (networks.init_foreground_prior; STAGE1_START, STAGE2_START)
    foreground_prior: float | None = None
    warmup_iterations: int = 0  # linear learning-rate warm-up before the poly decay (train.poly_lr)


#: Every stage-1 variant's start (stage1.task.apply_start_up, train.poly_lr; not the paper's):
#: nnU-Net's collapsed 6 of 20 cpu models, this 0 (benchmarks/RESULTS.md, "Stage-1 start-up").
STAGE1_START = {"foreground_prior": 0.01, "warmup_iterations": 50}

#: Stage 2's start (not the paper's, which starts as nnU-Net): stage 1's, with momentum 0.9
#: instead of nnU-Net's 0.99 for the whole run. On the cpu reproduction's validation phantoms
#: over 5 training seeds, nnU-Net's start left 2 seeds silent, the prior alone 2, stage 1's
#: start 1, this none (benchmarks/RESULTS.md, "Stage-2 start-up";
#: benchmarks/stage2_recipe_check.py).
STAGE2_START = {**STAGE1_START, "momentum": 0.9}


@dataclass(frozen=True)
class RunConfig:
    """Everything one profile fixes."""

    profile: str
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)
    breakage: BreakageConfig = field(default_factory=BreakageConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    stage1_net: NetworkConfig = field(default_factory=NetworkConfig)
    stage1_train: TrainConfig = field(default_factory=TrainConfig)
    stage2_net: NetworkConfig = field(
        default_factory=lambda: NetworkConfig(patch_size=(64, 64, 64))
    )
    stage2_train: TrainConfig = field(default_factory=TrainConfig)


def get_config(profile: str = "cpu") -> RunConfig:
    """Return the :class:`RunConfig` of a profile.

    Parameters
    ----------
    profile : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``.

    Returns
    -------
    RunConfig
        Frozen; derive variants with :func:`dataclasses.replace`.
    """
    check_profile(profile)
    base = RunConfig(profile=profile)
    if profile == "gpu":
        # The paper's settings: patch 128^3 stage 1, 64^3 stage 2, widened deep filters.
        return replace(
            base,
            stage1_net=NetworkConfig(filters=(32, 64, 128, 320), patch_size=(128, 128, 128)),
            stage1_train=TrainConfig(**STAGE1_START),
            stage2_net=NetworkConfig(filters=(32, 64, 128, 320), patch_size=(64, 64, 64)),
            stage2_train=TrainConfig(**STAGE2_START),
        )
    if profile == "cpu":
        return replace(
            base,
            # a laptop CPU: narrow net, 32^3 patches, batch 2 (1 mm phantoms: all three classes).
            # Inference keeps nnU-Net's overlap 0.5: with 32^3 patches, 0.25 left breaks at
            # the patch borders (TLD 3-9 points lower for every variant on the validation
            # phantoms, benchmarks/RESULTS.md) for half the inference time.
            stage1_net=NetworkConfig(filters=(8, 16, 32, 64), patch_size=(32, 32, 32)),
            # 400 iterations left the model below the region-growing baseline on held-out
            # phantoms (TLD 27% vs 37%); 2000 (about 5-10 min on 2 cores) reach TLD 68%
            # (benchmarks/RESULTS.md, stage 1)
            stage1_train=TrainConfig(
                iterations=2000, validate_every=500, checkpoint_every=500, amp=False, val_cases=1,
                patch_class_ratios=(0.33, 0.2, 0.4, 0.4), **STAGE1_START,
            ),  # fmt: skip
            # stage 2 on a laptop CPU: a 64^3 step of this network takes ~8x longer than a
            # 32^3 one (measured 11-12 s vs 1.4 s per batch of 2 on the shared 2-core box), and
            # the cpu phantoms' gaps (1 mm voxels, a few voxels long) fit a 32^3 box (32 mm)
            # with room for the random shift; the gpu profile keeps the paper's 64^3.
            stage2_net=NetworkConfig(filters=(8, 16, 32, 64), patch_size=(32, 32, 32)),
            # the breakage target is ~0.2% of a crop: after 400 iterations the network still
            # predicted no breakage (validation repair rate 0); 1000 repair ~75% of the gaps
            stage2_train=TrainConfig(
                iterations=1000, validate_every=100, amp=False, **STAGE2_START
            ),
        )
    # smoke: a few iterations of a tiny network, for CI
    return replace(
        base,
        stage1_net=NetworkConfig(filters=(4, 8, 16, 32), patch_size=(32, 32, 32)),
        # the same start without the warm-up, which would outlast the 4 iterations
        stage1_train=TrainConfig(
            iterations=4, batch_size=1, validate_every=4, checkpoint_every=4, amp=False,
            val_cases=1, foreground_prior=STAGE1_START["foreground_prior"],
        ),  # fmt: skip
        stage2_net=NetworkConfig(filters=(4, 8, 16, 32), patch_size=(32, 32, 32)),
        stage2_train=TrainConfig(
            iterations=4, batch_size=1, validate_every=4, amp=False,
            foreground_prior=STAGE2_START["foreground_prior"],
        ),  # fmt: skip
    )


# --------------------------------------------------------------------------------------------
# stage-2 training data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage2DataConfig:
    """How stage-2 training samples are simulated (choices of this implementation).

    Attributes
    ----------
    min_generation : int
        Peripheral branches (cut by the simulation) are leaves of at least this generation
        (docs/design.md: 3; the smoke phantoms stop at generation 2, so smoke uses 2).
    negative_fraction : float
        Probability that a crop is centred on a negative centre (an attention peak away from
        every simulated gap) when there is one. The paper crops at breakages only: 0 (the
        option "negatives" of ``deeptree.stage2.task.STAGE2_OPTIONS`` sets 0.5).
    fragments_per_gap : float
        Simulated false-positive fragments per gap (rounded, at least one when there is
        room); 0 (the paper's) switches fragments off (the option "fragments": 0.5).
    fragment_length : (float, float)
        Length range of a fragment's axis, voxels.
    fragment_radius : (float, float)
        Radius range of a fragment, voxels.
    fragment_distance : (float, float)
        Distance range (voxels) between a fragment's centre and the airway surface: close
        enough to raise attention (alpha = 5 voxels), never touching the airway.
    gap_clearance : float
        Fragments keep at least this distance (voxels) from every simulated gap, so that
        positives stay clean.
    match_distance : float
        An attention centre within this distance (voxels) of a ``Y^B`` voxel belongs to that
        gap (positive).
    max_shift_fraction : float
        Random shift of a crop, up to this fraction of the patch per axis (paper: "a random
        3D spatial shifting"; 0.25 as for stage-1 patches).
    crops_per_simulation : int
        Consecutive dataset items drawn from one simulation (see the module notes).
    simulation_streams : int
        Batches are dealt round-robin to this many streams, and a simulation serves
        ``crops_per_simulation`` consecutive crops *of its stream*. A DataLoader hands batch
        ``b`` to worker ``b % workers``, so with as many workers as streams each worker
        reuses its own simulation instead of simulating once per batch. 1: the plain order
        (simulation ``index // crops_per_simulation``). The crops do not depend on the
        number of workers, only on this value.
    """

    min_generation: int = 3
    # the paper's stage 2: crops centred on breakages only, no simulated fragments; the
    # additions are named options (deeptree.stage2.task.STAGE2_OPTIONS), each with its own
    # row in the reproduction's ablation
    negative_fraction: float = 0.0
    fragments_per_gap: float = 0.0
    fragment_length: tuple[float, float] = (1.0, 5.0)
    fragment_radius: tuple[float, float] = (0.8, 1.6)
    fragment_distance: tuple[float, float] = (3.0, 6.0)
    gap_clearance: float = 10.0
    match_distance: float = 5.0
    max_shift_fraction: float = 0.25
    crops_per_simulation: int = 4
    simulation_streams: int = 1


_DATA_PROFILES = {
    "smoke": Stage2DataConfig(min_generation=2),
    "cpu": Stage2DataConfig(crops_per_simulation=8),
    # 12 streams for the 12 DataLoader workers of a GPU run (deeptree reproduce --workers,
    # benchmarks/gpu_session.sh): each worker simulates once per 4 batches of 2, not once
    # per batch (a standard-phantom simulation costs ~4 s, a GPU step 0.08 s)
    "gpu": Stage2DataConfig(crops_per_simulation=8, simulation_streams=12),
}


def stage2_data_config(profile: str = "cpu") -> Stage2DataConfig:
    """The :class:`Stage2DataConfig` of a run profile (``smoke``, ``cpu``, ``gpu``)."""
    return _DATA_PROFILES[check_profile(profile)]


def stage2_settings(profile: str) -> tuple[NetworkConfig, TrainConfig, Stage2DataConfig]:
    """Network, training and data settings of stage 2 for a run profile:
    ``get_config(profile).stage2_net``, ``.stage2_train`` and :func:`stage2_data_config`."""

    run = get_config(profile)
    return run.stage2_net, run.stage2_train, stage2_data_config(profile)


# --------------------------------------------------------------------------------------------
# notebooks 05 and 06: cohort sizes
# --------------------------------------------------------------------------------------------
#: Cohort sizes of notebook 05 per profile: (training + validation cases, held-out cases).
NOTEBOOK_COHORT: dict[str, tuple[int, int]] = {"smoke": (2, 1), "cpu": (7, 3), "gpu": (24, 6)}


# --------------------------------------------------------------------------------------------
# the reproduction (notebook 07, deeptree reproduce)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReproduceSettings:
    """Everything a reproduction run fixes.

    Each seed has one purpose (notebook 07 lists them).

    Attributes
    ----------
    profile : str
    n_cases : int
        Training + validation phantoms of the synthetic cohort (``seed``).
    n_val : int
        Of those, validation phantoms (every choice is made on them).
    n_test : int
        Test phantoms, drawn from ``test_seed`` (synthetic cohort only; a ``--data`` folder
        is split 50/20/20 instead).
    phantom : str
        Phantom profile of the cohort.
    stage1_net, stage1_train : NetworkConfig, TrainConfig
        All stage-1 models (the four variants and clDice) share them.
    stage2_net, stage2_train : NetworkConfig, TrainConfig
        ``deeptree.config.stage2_settings(profile)``: the paper's stage 2.
    stage2_data : deeptree.config.Stage2DataConfig
    cldice_weight : float
        Factor on the soft clDice term (Shit et al. use alpha = 0.5).
    cldice_iterations : int
        Soft-skeleton iterations of clDice (should reach the largest lumen radius in voxels).
    validate : bool
        Score the validation cases at the end of each training (logged).
    seed, test_seed : int
        Seed the training + validation phantoms; the test phantoms (nothing is chosen on them).
    seeds : tuple of int
        Training seeds: initial weights and patch stream; every model is trained once per seed.
    stage2_options : tuple of str
        Additions to the paper's stage 2 that get a row of their own
        (``deeptree.stage2.task.STAGE2_OPTIONS``).
    extra_seeds : int
        How many of the training seeds (the first ones) also train clDice and the stage-2
        option models (the cpu budget: 1; their intervals are then over cases alone).
    cpu_trainings : int
        On a CPU, how many trainings run side by side (``deeptree.evaluation.fanout``), each
        with its share of the cores as torch threads; 1: one after the other, each with
        torch's default threads. The cpu profile: 2 (two one-thread trainings on the 2-core
        machine do more work per minute than one two-thread training).
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
    seeds: tuple[int, ...] = (0,)
    test_seed: int = 1000
    n_val: int = 1
    n_test: int = 1
    stage2_options: tuple[str, ...] = ("negatives", "fragments", "best")
    extra_seeds: int = 1
    cpu_trainings: int = 1


#: The reproduction per profile (see ReproduceSettings; smoke skips validation). The cpu design
#: fits `make reproduce PROFILE=cpu` in 75 minutes on the 2-core AVX-512 machine (measured there: 49.7 min)
#: (deeptree.evaluation.budget.estimate_seconds; a test checks it, and that the newest committed
#: run, results/20261207-cpu-synthetic, has these lengths): 2000 stage-1 iterations is the
#: longest that fits the estimate with two trainings side by side, and on the validation
#: phantoms the TLD of plain and gul still rises at 2000 (benchmarks/RESULTS.md, "Stage-1
#: recipe over seeds").
_PROFILE_SIZES: dict[str, dict] = {
    "smoke": {"n_cases": 2, "n_val": 1, "n_test": 2, "seeds": (0, 1), "extra_seeds": 1,
              "stage1_iterations": None, "stage2_iterations": None, "cldice_iterations": 3,
              "validate": False, "cpu_trainings": 2},
    "cpu": {"n_cases": 7, "n_val": 2, "n_test": 10, "seeds": (0, 1, 2), "extra_seeds": 1,
            "stage1_iterations": 2000, "stage2_iterations": 500, "cldice_iterations": 5,
            "validate": True, "cpu_trainings": 2},
    "gpu": {"n_cases": 14, "n_val": 4, "n_test": 10, "seeds": (0, 1, 2), "extra_seeds": 3,
            "stage1_iterations": None, "stage2_iterations": None, "cldice_iterations": 10,
            "validate": True, "cpu_trainings": 1},
}  # fmt: skip


def reproduce_settings(
    profile: str = "cpu",
    *,
    stage1_iterations: int | None = None,
    stage2_iterations: int | None = None,
    n_cases: int | None = None,
    validate: bool | None = None,
    seed: int = 0,
    seeds=None,
    n_test: int | None = None,
    test_seed: int = 1000,
    extra_seeds: int | None = None,
    cpu_trainings: int | None = None,
    validations: int = 4,
) -> ReproduceSettings:
    """The :class:`ReproduceSettings` of a run profile, with optional overrides.

    Stage 1: ``get_config(profile)`` (the cpu reproduction has its own length), validated
    ``validations`` times, evenly spaced (the training curves); stage 2: ``deeptree.config.stage2_settings(profile)``.

    Parameters
    ----------
    profile : str
        ``smoke``, ``cpu`` or ``gpu``.
    stage1_iterations, stage2_iterations : int, optional
        Training length of every stage-1 model / of the stage-2 models.
    n_cases : int, optional
        Training + validation phantoms (at least 2).
    validate : bool, optional
        See :class:`ReproduceSettings` (default: the profile's; off for ``smoke``).
    seed, test_seed : int
        Seed of the training + validation phantoms; of the test phantoms (must differ).
    seeds : int or sequence of int, optional
        Training seeds: a count ``n`` means ``0 .. n-1``.
    n_test : int, optional
        Test phantoms.
    extra_seeds : int, optional
        Seeds (the first ones) that also train clDice and the stage-2 options.
    cpu_trainings : int, optional
        Trainings side by side on a CPU (default: the profile's).
    validations : int
        Validation checks per stage-1 training, evenly spaced (the points of its training
        curve; default 4, one per quarter; the reference run: 8, for its flattening rule).

    Raises
    ------
    InputError
        Iterations, cohort or test size below their minimum, no training seed, or a test
        seed equal to the cohort seed.
    """

    check_profile(profile)
    run = get_config(profile)
    sizes = _PROFILE_SIZES[profile]
    s1 = run.stage1_train
    stage1_iterations = stage1_iterations or sizes["stage1_iterations"]
    if stage1_iterations is not None:
        s1 = replace(s1, iterations=int(stage1_iterations))
    net2, s2, data2 = stage2_settings(profile)
    stage2_iterations = stage2_iterations or sizes["stage2_iterations"]
    if stage2_iterations is not None:
        s2 = replace(s2, iterations=int(stage2_iterations))
    for name, cfg in (("stage-1", s1), ("stage-2", s2)):
        if cfg.iterations < 1:
            raise InputError(
                f"reproduce: {name} iterations must be at least 1, got {cfg.iterations}"
            )
    s1 = replace(
        s1,
        # evenly spaced validations: the training curves of the results (issue 30)
        validate_every=max(1, s1.iterations // _at_least_one("validations", validations)),
        checkpoint_every=min(s1.checkpoint_every, s1.iterations),
        seed=seed,
    )
    s2 = replace(
        s2,
        # stage 2 validates as its profile says (the option "best" keeps the best model)
        validate_every=min(s2.validate_every, s2.iterations),
        checkpoint_every=min(s2.checkpoint_every, s2.iterations),
        seed=seed,
    )
    n = int(n_cases) if n_cases is not None else sizes["n_cases"]
    if n < 2:
        raise InputError(
            f"reproduce: the synthetic cohort needs at least 2 cases (training and "
            f"validation), got {n}"
        )
    if seeds is None:
        seeds = sizes["seeds"]
    elif isinstance(seeds, int):
        seeds = tuple(range(int(seeds)))
    seeds = tuple(int(x) for x in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"reproduce: need at least one training seed, all different, got {seeds}")
    n_test = int(n_test) if n_test is not None else sizes["n_test"]
    if n_test < 1:
        raise InputError(f"reproduce: need at least 1 test case, got {n_test}")
    if int(test_seed) == int(seed):
        raise InputError(
            f"reproduce: the test seed must differ from the cohort seed (both {seed})"
        )
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
        seeds=seeds,
        test_seed=int(test_seed),
        n_val=min(sizes["n_val"], n - 1),
        n_test=n_test,
        extra_seeds=min(
            sizes["extra_seeds"] if extra_seeds is None else max(1, int(extra_seeds)), len(seeds)
        ),
        cpu_trainings=_at_least_one(
            "cpu trainings", sizes["cpu_trainings"] if cpu_trainings is None else cpu_trainings
        ),
    )


def _at_least_one(name: str, value) -> int:
    if int(value) < 1:
        raise InputError(f"reproduce: {name} must be at least 1, got {value}")
    return int(value)


#: What :func:`settings_record` keeps of a run's settings: what rebuilds them.
SETTINGS_RECORD_KEYS: tuple[str, ...] = (
    "profile", "n_cases", "seed", "seeds", "test_seed", "n_test", "extra_seeds",
    "stage1_iterations", "stage2_iterations", "validations", "validate",
)  # fmt: skip


def settings_record(settings: ReproduceSettings) -> dict:
    """The JSON-able record of a reproduction's settings (``results.json``, the manifest of
    shipped models) from which :func:`settings_from_record` rebuilds them."""
    s1 = settings.stage1_train
    return {
        "profile": settings.profile,
        "n_cases": settings.n_cases,
        "seed": settings.seed,
        "seeds": list(settings.seeds),
        "test_seed": settings.test_seed,
        "n_test": settings.n_test,
        "extra_seeds": settings.extra_seeds,
        "stage1_iterations": s1.iterations,
        "stage2_iterations": settings.stage2_train.iterations,
        "validations": max(1, s1.iterations // max(1, s1.validate_every)),
        "validate": settings.validate,
    }


def settings_from_record(record: dict, **overrides) -> ReproduceSettings:
    """The :class:`ReproduceSettings` of a :func:`settings_record`.

    Parameters
    ----------
    record : dict
        Keys :data:`SETTINGS_RECORD_KEYS`.
    **overrides
        Replace recorded values (None: keep), e.g. ``n_test=1, seeds=(0,)`` to score a
        reduced set.

    Raises
    ------
    InputError
        A key is missing, or a value :func:`reproduce_settings` refuses.
    """
    missing = [k for k in SETTINGS_RECORD_KEYS if k not in record]
    if missing:
        raise InputError(f"settings record without {', '.join(missing)}")
    values = {k: record[k] for k in SETTINGS_RECORD_KEYS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    profile = values.pop("profile")
    values["seeds"] = tuple(values["seeds"]) if not isinstance(values["seeds"], int) else values["seeds"]
    return reproduce_settings(profile, **values)
