"""The stage-1 and stage-2 networks: nnU-Net-like 3D U-Nets (MONAI ``DynUNet``).

Paper, "Implementation details": nnU-Net is the backbone of both stages, with the number of
downsamplings reduced to 3 (4 resolution levels) so that the smallest peripheral branches
survive the encoder, and the convolutions widened at the deeper levels. Everything else is
nnU-Net's default: two 3x3x3 convolutions per level, instance normalisation, leaky ReLU
(slope 0.01), strided-convolution downsampling, transposed-convolution upsampling, deep
supervision.

The filter widths per level come from the run profile (``deeptree.config.NetworkConfig``):
``gpu`` uses (32, 64, 128, 320), i.e. the deepest level widened to nnU-Net's cap of 320
instead of doubling to 256; the ``cpu`` and ``smoke`` profiles use narrow networks so that
a laptop trains one in minutes.

Deep supervision: in training mode :class:`AirwayUNet` returns the logits at full, 1/2 and
1/4 resolution *without* upsampling them (nnU-Net style, cheaper than MONAI's default of
interpolating every head to full size); the loss downsamples the targets instead
(``deeptree.stage1.losses.Stage1Loss``). In eval mode it returns the full-resolution logits only,
as sliding-window inference expects.

Stage-2 training starts its output heads at a small foreground probability
(:func:`init_foreground_prior`); see there why.
"""

from __future__ import annotations

import math

import torch
from monai.networks.nets import DynUNet

from deeptree.config import NetworkConfig, n_output_channels
from deeptree.io import InputError

#: Number of resolution levels (paper: 3 downsamplings, 4 levels).
N_LEVELS = 4

#: Deep-supervision heads below full resolution (1/2 and 1/4).
N_DEEP_SUPERVISION = 2


class AirwayUNet(DynUNet):
    """``DynUNet`` whose training-mode output is the list of deep-supervision logits at their
    own resolution (full first), instead of a stack of heads interpolated to full size."""

    def forward(self, x: torch.Tensor):
        """Logits.

        Parameters
        ----------
        x : tensor, shape (B, C_in, X, Y, Z)
            Each spatial size divisible by 8 (three stride-2 downsamplings).

        Returns
        -------
        tensor (B, C_out, X, Y, Z) in eval mode or without deep supervision; in training
        mode with deep supervision a list ``[full, half, quarter]`` of tensors
        (B, C_out, X / 2^i, Y / 2^i, Z / 2^i).
        """
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            return [out, *self.heads]
        return out


def build_network(
    net: NetworkConfig,
    in_channels: int,
    out_channels: int,
    *,
    deep_supervision: bool | None = None,
) -> AirwayUNet:
    """Build a 4-level nnU-Net-like 3D U-Net.

    Parameters
    ----------
    net : NetworkConfig
        ``filters`` (one width per level, 4 values) and ``deep_supervision``.
    in_channels : int
        1 for stage 1 (CT), 2 for stage 2 (CT + attention map).
    out_channels : int
        Classes including background: 4 (AMC), 2 (plain / stage 2).
    deep_supervision : bool, optional
        Overrides ``net.deep_supervision``.

    Returns
    -------
    AirwayUNet
        Randomly initialised (seed torch before calling for reproducible weights).
    """
    filters = tuple(int(f) for f in net.filters)
    if len(filters) != N_LEVELS or min(filters) < 1:
        raise InputError(
            f"network filters: expected {N_LEVELS} positive widths (one per level), got {filters}"
        )
    if in_channels < 1 or out_channels < 2:
        raise InputError(
            f"network: need in_channels >= 1 and out_channels >= 2, got {in_channels}, {out_channels}"
        )
    ds = net.deep_supervision if deep_supervision is None else deep_supervision
    return AirwayUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[3] * N_LEVELS,
        strides=[1] + [2] * (N_LEVELS - 1),
        upsample_kernel_size=[2] * (N_LEVELS - 1),
        filters=filters,
        norm_name=("INSTANCE", {"affine": True}),
        act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        deep_supervision=ds,
        deep_supr_num=N_DEEP_SUPERVISION,
    )


def stage1_network(net: NetworkConfig, variant: str = "amc+gul") -> AirwayUNet:
    """The stage-1 network of a variant: 1 input channel (normalised CT), 4 output channels
    with AMC (background + 3 anatomy classes) or 2 without (see ``deeptree.stage1.losses``).

    Every variant built after the same ``torch.manual_seed`` starts from the same weights
    everywhere but the output heads (whose shape depends on the classes): the body is taken
    from the 2-channel network of that seed, so that the variants of an ablation differ only
    in the component ablated. (Built directly, the 4-channel network draws its heads before
    the shared layers are initialised, and every weight would differ.)
    """

    channels = n_output_channels(variant)
    state = torch.random.get_rng_state()
    model = build_network(net, in_channels=1, out_channels=channels)
    if channels != 2:
        torch.random.set_rng_state(state)
        reference = build_network(net, in_channels=1, out_channels=2).state_dict()
        own = model.state_dict()
        shared = {k: v for k, v in reference.items() if own[k].shape == v.shape}
        model.load_state_dict(shared, strict=False)
    return model


def stage2_network(net: NetworkConfig) -> AirwayUNet:
    """The stage-2 breakage-connection network: 2 input channels (normalised CT, attention
    map H_bar), 2 output channels (background, breakage), as the paper's Eq. 3."""
    return build_network(net, in_channels=2, out_channels=2)


def init_foreground_prior(model: AirwayUNet, prior: float) -> AirwayUNet:
    """Start every output head at a small foreground probability ``prior`` (in place).

    The 1x1x1 output convolutions (full resolution and the deep-supervision heads) get bias
    0 for the background channel and ``log(prior / (1 - (C - 1) prior))`` for each of the
    ``C - 1`` foreground channels, so that an untrained network predicts about ``prior``
    everywhere. This is the rare-class initialisation of Lin et al. (Focal Loss for Dense
    Object Detection, ICCV 2017, Sec. 3.3, prior 0.01). Why stage 2 needs it: its target
    (the removed gap voxels, ~0.2% of a crop) is so rare that, started at 50/50, the first
    iterations' push towards background, amplified by nnU-Net's momentum of 0.99, drove one
    training seed in three to a network that never predicts a breakage voxel
    (``benchmarks/HISTORY.md``, stage 2).

    Parameters
    ----------
    model : AirwayUNet
    prior : float
        In (0, 1 / (C - 1)).

    Returns
    -------
    AirwayUNet
        ``model`` itself.
    """
    heads = [model.output_block, *getattr(model, "deep_supervision_heads", [])]
    n_classes = heads[0].conv.conv.out_channels
    if not 0.0 < prior < 1.0 / (n_classes - 1):
        raise InputError(
            f"foreground prior must lie in (0, {1.0 / (n_classes - 1):g}), got {prior}"
        )
    foreground_bias = math.log(prior / (1.0 - (n_classes - 1) * prior))
    with torch.no_grad():
        for head in heads:
            bias = head.conv.conv.bias
            bias.zero_()
            bias[1:] = foreground_bias
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def divisor() -> int:
    """Every spatial size fed to the network must be a multiple of this (2^3 = 8)."""
    return 2 ** (N_LEVELS - 1)


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA when available, else the CPU.

    A device that this torch cannot use is refused at once, before any long work.

    Parameters
    ----------
    device : str or torch.device, optional
        E.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        ``device`` is not a device name (e.g. ``"gpu0"``), names CUDA on a torch without
        CUDA or a GPU index that does not exist, or names MPS where MPS is not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"--device {device}: not a device name (use cpu, cuda, cuda:N or mps)"
        ) from err
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            build = "without CUDA" if torch.version.cuda is None else "with CUDA, but no GPU is visible"
            raise InputError(f"--device {device}: this torch {torch.__version__} runs {build}; use --device cpu")
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise InputError(f"--device {device}: no such GPU ({count} visible: cuda:0 to cuda:{count - 1})")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device}: device type {chosen.type!r} is not supported (use cpu, cuda, cuda:N or mps)")
    return chosen
