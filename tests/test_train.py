"""Tests of deeptree.train: the loss goes down, exact resume after Ctrl-C, checkpoints, logs."""

from __future__ import annotations

import json
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from deeptree.checkpoints import load_checkpoint
from deeptree.config import NetworkConfig, TrainConfig, get_config
from deeptree.io import InputError
from deeptree.networks import stage1_network
from deeptree.stage1.losses import Stage1Loss, gul_distance_weight
from deeptree.train import TrainingTask, make_optimizer, plot_log, poly_lr, read_log, train

PATCH = 16


class TubeDataset(torch.utils.data.Dataset):
    """Random noisy tubes: item ``index`` depends only on ``(seed, index)``."""

    def __init__(self, seed: int = 0, size: int = PATCH):
        self.seed, self.size = seed, size

    def __len__(self):
        return 10**6

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        n = self.size
        i, j = np.mgrid[:n, :n]
        ci, cj, r = rng.uniform(5, n - 5), rng.uniform(5, n - 5), rng.uniform(1.5, 3.5)
        disc = (i - ci) ** 2 + (j - cj) ** 2 <= r**2
        label = np.repeat(disc[:, :, None], n, axis=2).astype(np.int64)
        label[label > 0] = 1 if r > 3 else 3
        image = (label == 0).astype(np.float32) + rng.normal(0, 0.3, label.shape).astype(np.float32)
        return {
            "image": torch.from_numpy(image)[None],
            "label": torch.from_numpy(label)[None],
            "distance": torch.from_numpy(gul_distance_weight(label))[None],
        }


def make_task(variant="amc+gul", filters=(2, 4, 8, 16)):
    torch.manual_seed(0)
    model = stage1_network(NetworkConfig(filters=filters, patch_size=(PATCH,) * 3), variant)
    criterion = Stage1Loss(variant)
    return TrainingTask(
        model=model,
        loss_fn=lambda out, b: criterion(out, b["label"], b["distance"]),
        dataset=TubeDataset(),
        meta={"stage": 1, "variant": variant, "filters": list(filters)},
    )


CFG = TrainConfig(iterations=6, batch_size=2, validate_every=3, checkpoint_every=2, amp=False)


def fixed_batch_loss(task, n=4):
    task.model.eval()
    batch = torch.utils.data.default_collate([task.dataset[10_000 + k] for k in range(n)])
    with torch.no_grad():
        return float(task.loss_fn(task.model(batch["image"]), batch)[0])


def test_training_lowers_the_loss_on_smoke_profile(tmp_path):
    smoke = get_config("smoke")
    task = make_task(filters=smoke.stage1_net.filters)
    before = fixed_batch_loss(task)
    cfg = replace(smoke.stage1_train, iterations=12, batch_size=2, validate_every=100)
    result = train(task, cfg, tmp_path, device="cpu", progress=False)
    after = fixed_batch_loss(task)
    assert result.iteration == 12 and len([e for e in result.history if "loss" in e]) == 12
    assert after < before - 0.05, (before, after)


def test_resume_after_ctrl_c_gives_identical_weights(tmp_path, deterministic):
    calls = []
    full_task = make_task()
    full_task.validate = lambda model: calls.append(1) or {"score": 0.5}
    full = train(full_task, CFG, tmp_path / "full", device="cpu", progress=False)

    def interrupt_at_4(iteration, entry):
        if iteration == 4:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, handled at the iteration's end

    task = make_task()
    task.validate = lambda model: {"score": 0.5}
    with pytest.raises(KeyboardInterrupt, match="after iteration 4"):
        train(task, CFG, tmp_path / "cut", device="cpu", progress=False, callback=interrupt_at_4)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["iteration"] == 4
    torch.manual_seed(123)  # disturb the global state: resume must restore it
    np.random.seed(7)
    resumed_task = make_task()
    resumed_task.validate = lambda model: {"score": 0.5}
    resumed = train(resumed_task, CFG, tmp_path / "cut", device="cpu", progress=False, resume=True)

    assert resumed.iteration == 6
    a, b = full_task.model.state_dict(), resumed_task.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt_a = load_checkpoint(full.checkpoint)["optimizer"]["state"]
    opt_b = load_checkpoint(resumed.checkpoint)["optimizer"]["state"]
    assert all(torch.equal(opt_a[k]["momentum_buffer"], opt_b[k]["momentum_buffer"]) for k in opt_a)
    assert torch.equal(
        load_checkpoint(full.checkpoint)["rng"]["torch"],
        load_checkpoint(resumed.checkpoint)["rng"]["torch"],
    )
    losses_full = [e["loss"] for e in read_log(full.log) if "loss" in e]
    losses_resumed = [e["loss"] for e in read_log(resumed.log) if "loss" in e]
    assert losses_full == losses_resumed
    assert len(calls) == 2  # validation at 3 and 6


def test_resume_drops_log_lines_after_the_checkpoint(tmp_path):
    task = make_task()
    train(
        task, replace(CFG, iterations=4, checkpoint_every=2), tmp_path, device="cpu", progress=False
    )
    log = tmp_path / "log.jsonl"
    # simulate a run killed hard after the checkpoint at 4: stray lines for 5 and 6
    with open(log, "a") as f:
        f.write(json.dumps({"iteration": 5, "loss": 9.0}) + "\n")
    cfg = replace(CFG, iterations=4)
    result = train(make_task(), cfg, tmp_path, device="cpu", progress=False, resume=True)
    assert [e["iteration"] for e in read_log(result.log)] == [1, 2, 3, 4]


def test_outputs_schedule_and_plot(tmp_path):
    result = train(make_task(), CFG, tmp_path, device="cpu", progress=False)
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
    entries = read_log(result.log)
    assert entries[0]["lr"] == pytest.approx(0.01) and entries[-1]["lr"] == pytest.approx(
        poly_lr(5, CFG)
    )
    assert {"dice", "ce", "gul", "loss"} <= set(entries[0])
    assert poly_lr(0, CFG) == 0.01 and poly_lr(CFG.iterations, CFG) == 0.0
    fig = plot_log(entries + [{"iteration": 6, "val": {"TLD": 0.5}}])
    assert len(fig.axes) == 2


def test_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a DeepTree checkpoint"):
        load_checkpoint(other)
    train(make_task(), replace(CFG, iterations=2), tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(InputError, match="variant"):
        train(
            make_task("plain"),
            replace(CFG, iterations=2),
            tmp_path / "run",
            device="cpu",
            progress=False,
            resume=True,
        )
    with pytest.raises(InputError, match="iterations"):
        train(
            make_task(),
            replace(CFG, iterations=3),
            tmp_path / "run",
            device="cpu",
            progress=False,
            resume=True,
        )


# --- CLI ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_train_then_resume_and_predict(tmp_path, capsys):
    from deeptree.cli import main
    from deeptree.io import read_nifti
    from deeptree.phantom import generate_cohort

    data = tmp_path / "cohort"
    generate_cohort(data, "smoke", 2, seed=0, progress=False)
    out = tmp_path / "run"
    args = [
        "train",
        "--stage",
        "1",
        "--profile",
        "smoke",
        "--variant",
        "amc+gul",
        "--data",
        str(data),
    ]
    args += ["--out", str(out), "--val", "1", "--no-progress", "--device", "cpu"]
    assert main([*args, "--iterations", "1"]) == 0
    assert load_checkpoint(out / "last.pt")["iteration"] == 1
    assert any("val" in e for e in read_log(out / "log.jsonl"))
    assert main([*args, "--iterations", "2", "--resume"]) == 2
    assert "--iterations differs from the run being resumed: the run has 1, this command 2" in (
        capsys.readouterr().err
    )
    pred = tmp_path / "pred"
    args = ["predict", "--stage", "1", "--checkpoint", str(out / "last.pt"), "--input"]
    assert (
        main([*args, str(data / "imagesTr"), "--out", str(pred), "--classes", "--device", "cpu"])
        == 0
    )
    ct = read_nifti(data / "imagesTr" / "PHANTOM_000_0000.nii.gz")
    mask = read_nifti(pred / "PHANTOM_000.nii.gz")
    assert mask.array.shape == ct.array.shape and np.array_equal(mask.affine, ct.affine)
    assert (pred / "PHANTOM_001_classes.nii.gz").is_file()
    assert main([*args, str(tmp_path / "nothing"), "--out", str(pred)]) == 2


def scripted_validation(values):
    """A ``validate`` that returns the given scores in turn (one per call)."""
    scores = iter(values)
    return lambda model: {"score": next(scores)}


def test_select_keeps_the_best_validated_model(tmp_path):
    """Scores 0.2, 0.7, 0.4 at iterations 2, 4, 6: best.pt is iteration 4's model."""
    from deeptree.checkpoints import selected_checkpoint

    cfg = replace(CFG, validate_every=2)
    snapshots = {}
    task = make_task()
    task.validate = scripted_validation([0.2, 0.7, 0.4])
    task.select = "score"

    def keep_weights(iteration, entry):
        snapshots[iteration] = {k: v.clone() for k, v in task.model.state_dict().items()}

    result = train(task, cfg, tmp_path, device="cpu", progress=False, callback=keep_weights)
    assert result.best == tmp_path / "best.pt"
    best = load_checkpoint(result.best)
    assert best["iteration"] == 4 and best["meta"] == load_checkpoint(result.checkpoint)["meta"]
    assert all(torch.equal(best["model"][k], snapshots[4][k]) for k in snapshots[4])
    assert not all(torch.equal(best["model"][k], snapshots[6][k]) for k in snapshots[6])
    assert selected_checkpoint(tmp_path) == tmp_path / "best.pt"


def test_select_ignores_nan_and_ties_keep_the_earlier(tmp_path):
    cfg = replace(CFG, validate_every=2)
    task = make_task()
    task.validate = scripted_validation([float("nan"), 0.5, 0.5])
    task.select = "score"
    result = train(task, cfg, tmp_path, device="cpu", progress=False)
    assert load_checkpoint(result.best)["iteration"] == 4


def test_no_selection_means_last_pt(tmp_path):
    from deeptree.checkpoints import selected_checkpoint

    (tmp_path / "best.pt").write_bytes(b"stale")  # an earlier run's: a fresh start removes it
    task = make_task()
    task.validate = scripted_validation([0.1, 0.9])
    result = train(task, CFG, tmp_path, device="cpu", progress=False)
    assert result.best is None and not (tmp_path / "best.pt").exists()
    assert selected_checkpoint(tmp_path) == result.checkpoint
    with pytest.raises(InputError, match="no best.pt or last.pt"):
        selected_checkpoint(tmp_path / "nothing")


def test_select_after_resume_remembers_the_best_so_far(tmp_path):
    """Best 0.9 at iteration 2, interrupted at 4, resumed: 0.5 at iteration 6 does not replace it."""
    cfg = replace(CFG, validate_every=2)
    task = make_task()
    task.validate = scripted_validation([0.9, 0.3])
    task.select = "score"

    def interrupt_at_4(iteration, entry):
        if iteration == 4:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(task, cfg, tmp_path, device="cpu", progress=False, callback=interrupt_at_4)
    resumed = make_task()
    resumed.validate = scripted_validation([0.5])
    resumed.select = "score"
    result = train(resumed, cfg, tmp_path, device="cpu", progress=False, resume=True)
    assert result.iteration == 6 and load_checkpoint(result.best)["iteration"] == 2


def test_select_warns_when_the_score_never_rises_above_zero(tmp_path):
    cfg = replace(CFG, validate_every=2)
    task = make_task()
    task.validate = scripted_validation([0.0, 0.0, 0.0])
    task.select = "score"
    with pytest.warns(UserWarning, match="never rose above 0"):
        result = train(task, cfg, tmp_path, device="cpu", progress=False)
    assert load_checkpoint(result.best)["iteration"] == 2


def test_warmup_rises_linearly_then_follows_the_poly_curve():
    cfg = replace(CFG, iterations=100, warmup_iterations=10)
    plain = replace(cfg, warmup_iterations=0)
    assert poly_lr(0, cfg) == pytest.approx(0.001) and poly_lr(4, cfg) == pytest.approx(0.005)
    rising = [poly_lr(i, cfg) for i in range(10)]
    assert all(b > a for a, b in zip(rising, rising[1:], strict=False))
    # from the end of the warm-up on, the same decay as without (the run is not lengthened)
    for i in (10, 50, 99, 100):
        assert poly_lr(i, cfg) == poly_lr(i, plain)


def sgd_steps(model, cfg, steps, loss_of):
    """``steps`` iterations of the training loop's optimiser (``train.make_optimizer``: nnU-Net's
    SGD, the profile's momentum) on the learning rate of ``train.poly_lr`` (its warm-up
    included), with the gradient clipped as ``train`` does; ``loss_of()`` gives the loss."""
    optimizer = make_optimizer(model, cfg)
    for it in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(it, cfg)
        optimizer.zero_grad()
        loss_of().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()


def startup_batch(n=32):
    """Two copies of one hand-built 32^3 patch: a thick (class 1), a medium (2) and a thin (3)
    tube of air in lung-like tissue, 8.5% airway."""
    i, j, k = np.mgrid[:n, :n, :n]
    label = np.zeros((n, n, n), np.int64)
    label[(i - 10) ** 2 + (j - 10) ** 2 <= 4.5**2] = 1
    label[((i - 22) ** 2 + (k - 16) ** 2 <= 2.5**2) & (j > 8)] = 2
    label[((j - 24) ** 2 + (k - 8) ** 2 <= 1.2**2) & (i > 12)] = 3
    rng = np.random.default_rng(0)
    image = np.where(label > 0, 0.0, 0.1) + rng.normal(0, 0.03, label.shape)
    item = {
        "image": torch.from_numpy(image.astype(np.float32))[None],
        "label": torch.from_numpy(label)[None],
        "distance": torch.from_numpy(gul_distance_weight(label))[None],
    }
    return torch.utils.data.default_collate([item, item])


@pytest.mark.parametrize("variant", ["amc+gul", "plain"])
def test_recipe_start_up_neither_collapses_nor_saturates_in_50_steps(variant):
    # issue 30: with random heads a 4-channel model starts at airway probability 0.65-0.91
    # everywhere and nnU-Net's first steps could drive it to "no airway"; the recipe's start
    # (foreground prior of every head, learning-rate warm-up) is the same for every variant
    from deeptree.stage1.task import apply_start_up

    run = get_config("cpu")
    cfg = replace(run.stage1_train, iterations=2000, seed=0)
    assert cfg.foreground_prior is not None and cfg.warmup_iterations > 0
    torch.manual_seed(cfg.seed)
    model = apply_start_up(stage1_network(run.stage1_net, variant), cfg)
    criterion = Stage1Loss(variant)
    batch = startup_batch()
    airway = batch["label"][:1, 0] > 0
    model.eval()  # one output (no deep-supervision heads) for the probes
    with torch.no_grad():
        start = 1 - torch.softmax(model(batch["image"][:1]), 1)[:, 0]
    model.train()
    assert float(start.mean()) == pytest.approx(cfg.foreground_prior, rel=0.5)
    sgd_steps(model, cfg, 50, lambda: criterion(model(batch["image"]), batch["label"], batch["distance"])[0])
    model.eval()
    with torch.no_grad():
        p = (1 - torch.softmax(model(batch["image"][:1]), 1)[:, 0])
    # neither "no airway" nor "airway" everywhere: high in the tubes, low outside
    assert float(p[airway].mean()) > 0.5, float(p[airway].mean())
    assert float(p[~airway].mean()) < 0.2, float(p[~airway].mean())
    assert 0.01 < float(p.mean()) < 0.5


def stage2_startup_batch(n=32):
    """Two copies of one hand-built stage-2 crop: a tube of air (radius 2.5 voxels) whose
    broken mask lacks 6 voxels of its length; inputs (CT-like image, the broken mask's breakage
    attention), target the missing piece (0.4% of the crop, as small as a real gap)."""
    from deeptree.attention import breakage_attention

    i, j, k = np.mgrid[:n, :n, :n]
    tube = (i - 16) ** 2 + (j - 16) ** 2 <= 2.5**2
    gap = tube & (k >= 13) & (k < 19)
    image = np.where(tube, 0.0, 0.1) + np.random.default_rng(0).normal(0, 0.03, tube.shape)
    x = np.stack([image, breakage_attention(tube & ~gap, 5.0)]).astype(np.float32)
    return torch.from_numpy(x)[None].repeat(2, 1, 1, 1, 1), torch.from_numpy(gap)


@pytest.mark.parametrize("seed", [0, 2])
def test_stage2_start_up_learns_a_gap_in_100_steps(seed):
    # issue 30: from nnU-Net's start the cpu stage-2 network of seed 2 falls silent on this
    # batch (breakage probability 0.0003 on the gap after 50 and after 150 steps) as networks
    # did on the validation phantoms; the profiles' start (config.STAGE2_START) learns it
    # (seed 0 is the slowest of seeds 0-2 with it: 0.96 on the gap at 100 steps)
    from deeptree.networks import init_foreground_prior, stage2_network

    run = get_config("cpu")
    cfg = replace(run.stage2_train, seed=seed)
    assert cfg.foreground_prior is not None and cfg.warmup_iterations > 0
    torch.manual_seed(seed)
    model = init_foreground_prior(stage2_network(run.stage2_net), cfg.foreground_prior)
    criterion = Stage1Loss("plain")
    x, gap = stage2_startup_batch()
    target = gap.long()[None, None].repeat(2, 1, 1, 1, 1)
    sgd_steps(model, cfg, 100, lambda: criterion(model(x), target, None)[0])
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(x[:1]), 1)[0, 1]
    # drawn in the gap, not everywhere
    assert float(p[gap].mean()) > 0.3, float(p[gap].mean())
    assert float(p[~gap].mean()) < 0.05, float(p[~gap].mean())
