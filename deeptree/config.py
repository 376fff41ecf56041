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
the paper say so in a comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")


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
    min_generation: int = 3  # peripheral = leaf branch of generation >= 3 (DESIGN.md)


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

    iterations: int = 250_000  # paper: 500 epochs x 250 iterations (nnU-Net epoch)
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
    # patch centre drawn on: (anywhere, class 1, class 2, class 3); nnU-Net forces foreground in
    # 1/3 of patches, we oversample the small-airway class 3 (stage 1)
    patch_class_ratios: tuple[float, float, float, float] = (0.33, 0.17, 0.2, 0.3)
    val_cases: int = 2  # cases of the cohort held out for validation during training
    # None: nnU-Net's output initialisation; a float p: the output heads start at foreground
    # probability p (deeptree.networks.init_foreground_prior; stage 2, whose target is ~0.2%
    # of a crop: one training seed in three never predicted a breakage voxel without it)
    foreground_prior: float | None = None


#: Stage 2's starting foreground probability (Lin et al., ICCV 2017: 0.01 for a rare class).
STAGE2_FOREGROUND_PRIOR = 0.01


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
    stage2_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(foreground_prior=STAGE2_FOREGROUND_PRIOR)
    )


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
            stage2_net=NetworkConfig(filters=(32, 64, 128, 320), patch_size=(64, 64, 64)),
        )
    if profile == "cpu":
        return replace(
            base,
            # a laptop CPU: narrow net, 32^3 patches, batch 2;
            # the 1.5 mm phantoms have no class 3 (its share goes to classes 1-2).
            # Inference keeps nnU-Net's overlap 0.5: with 32^3 patches, 0.25 left breaks at
            # the patch borders (TLD 3-9 points lower for every variant on the validation
            # phantoms, benchmarks/RESULTS.md) for half the inference time.
            stage1_net=NetworkConfig(filters=(8, 16, 32, 64), patch_size=(32, 32, 32)),
            # 400 iterations left the model below the region-growing baseline on held-out
            # phantoms (TLD 27% vs 37%); 2000 (about 5-10 min on 2 cores) reach TLD 68%
            # (benchmarks/RESULTS.md, stage 1)
            stage1_train=TrainConfig(
                iterations=2000,
                validate_every=500,
                checkpoint_every=500,
                amp=False,
                val_cases=1,
                patch_class_ratios=(0.33, 0.2, 0.4, 0.4),
            ),
            # stage 2 on a laptop CPU: a 64^3 step of this network takes ~8x longer than a
            # 32^3 one (measured 11-12 s vs 1.4 s per batch of 2 on the shared 2-core box), and
            # the cpu phantoms' gaps (1.5 mm voxels, a few voxels long) fit a 32^3 box (48 mm)
            # with room for the random shift; the gpu profile keeps the paper's 64^3.
            stage2_net=NetworkConfig(filters=(8, 16, 32, 64), patch_size=(32, 32, 32)),
            # the breakage target is ~0.2% of a crop: after 400 iterations the network still
            # predicted no breakage (validation repair rate 0); 1000 repair ~75% of the gaps
            stage2_train=TrainConfig(
                iterations=1000,
                validate_every=100,
                amp=False,
                foreground_prior=STAGE2_FOREGROUND_PRIOR,
            ),
        )
    # smoke: a few iterations of a tiny network, for CI
    return replace(
        base,
        stage1_net=NetworkConfig(filters=(4, 8, 16, 32), patch_size=(32, 32, 32)),
        stage1_train=TrainConfig(
            iterations=4, batch_size=1, validate_every=4, checkpoint_every=4, amp=False, val_cases=1
        ),
        stage2_net=NetworkConfig(filters=(4, 8, 16, 32), patch_size=(32, 32, 32)),
        stage2_train=TrainConfig(
            iterations=4,
            batch_size=1,
            validate_every=4,
            amp=False,
            foreground_prior=STAGE2_FOREGROUND_PRIOR,
        ),
    )
