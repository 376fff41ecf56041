"""The time budget of a reproduction: estimated wall time from measured per-step costs
(``deeptree reproduce`` prints it before it starts; the cpu profile's design is sized so that
``make reproduce PROFILE=cpu`` fits in 75 minutes on the 2-core machine).
"""

from __future__ import annotations

from dataclasses import replace

from deeptree.config import ReproduceSettings
from deeptree.threads import cpu_description

#: Seconds per step of the cpu profile on the 2-core dev machine (AMD EPYC), torch's default
#: two threads, as ``make reproduce`` runs: ``benchmarks/bench_reproduce.py --threads 2``
#: measured every step on 2026-12-02 on a quiet machine (load average 0.9; raw JSON
#: ``benchmarks/records/cpu_threads/20261202-bench-reproduce-idle-2threads.json``, benchmarks/RESULTS.md
#: "Reproduction design"). The figures of 2026-12-01, measured under a load average of 12-15
#: and scaled down, were 1.4-2.2x these. Another machine scales them all alike.
#: What ``make reproduce PROFILE=cpu`` is sized to take on the 2-core machine, in minutes
#: (issue 18's bar, kept by issue 30), at the step costs of :data:`CPU_STEP_SECONDS`.
CPU_BUDGET_MINUTES: int = 75

CPU_STEP_SECONDS: dict[str, float] = {
    "phantom": 1.228,
    "prepare": 0.483,
    "stage1_it": 0.098,
    "cldice_it": 0.17,
    "stage2_it": 0.16,
    "predict": 4.973,
    "repair": 0.669,
    "metrics": 0.1,  # measured 0.022 on a broken ground truth; rounded up for real predictions
    "baseline": 0.36,
    "stage2_validation": 0.231,
}


#: The same steps on a 2-core AMD EPYC with AVX2 and no AVX-512 (the machine of the sessions of
#: 2026-12-06/07, where CI also ran), torch's two threads, quiet machine:
#: ``benchmarks/bench_reproduce.py --threads 2`` on 2026-12-07 (raw JSON
#: ``benchmarks/records/cpu_threads/20261207-bench-reproduce-avx2-2threads.json``). Every step
#: costs 1.7-2.3x its AVX-512 figure, the sliding window 1.9x.
CPU_STEP_SECONDS_AVX2: dict[str, float] = {
    "phantom": 2.64,
    "prepare": 0.88,
    "stage1_it": 0.226,
    "cldice_it": 0.344,
    "stage2_it": 0.341,
    "predict": 9.632,
    "repair": 1.115,
    "metrics": 0.1,  # measured 0.045; rounded up as above
    "baseline": 0.714,
    "stage2_validation": 0.418,
}


def machine_step_seconds(cpu: str | None = None) -> dict[str, float]:
    """The step costs of this machine's CPU class: :data:`CPU_STEP_SECONDS_AVX2` on a CPU
    without AVX-512, else :data:`CPU_STEP_SECONDS` (the design's reference machine).

    Parameters
    ----------
    cpu : str, optional
        A :func:`deeptree.threads.cpu_description` (default: this machine's).

    Returns
    -------
    dict
        Seconds per step, the keys of :data:`CPU_STEP_SECONDS`.
    """
    cpu = cpu_description() if cpu is None else cpu
    return dict(CPU_STEP_SECONDS_AVX2 if "no AVX-512" in cpu else CPU_STEP_SECONDS)


def estimate_seconds(settings: ReproduceSettings, rates: dict | None = None) -> dict[str, float]:
    """Estimated wall time of :func:`reproduce` (synthetic cohort, nothing reused), by phase.

    Parameters
    ----------
    settings : ReproduceSettings
    rates : dict, optional
        Seconds per step (keys of :data:`CPU_STEP_SECONDS`, the default).

    Returns
    -------
    dict
        ``data``, ``train stage 1``, ``train stage 2``, ``validation``, ``evaluate``,
        ``total`` (seconds).
    """
    r = {**CPU_STEP_SECONDS, **(rates or {})}
    n_seeds, extra = len(settings.seeds), settings.extra_seeds
    options = [o for o in settings.stage2_options if o != "best"]
    it1, it2 = settings.stage1_train.iterations, settings.stage2_train.iterations
    n_val, n_test = settings.n_val, settings.n_test
    n_val_runs = it2 // max(1, settings.stage2_train.validate_every) if settings.validate else 0
    n_val_runs1 = it1 // max(1, settings.stage1_train.validate_every) if settings.validate else 0
    # trainings side by side on the CPU do more work per minute (their validations with them)
    side_by_side = CPU_SIDE_BY_SIDE_SPEEDUP if settings.cpu_trainings > 1 else 1.0
    out = {
        "data": (settings.n_cases + n_test) * r["phantom"] + settings.n_cases * r["prepare"],
        "train stage 1": (n_seeds * 4 * it1 * r["stage1_it"] + extra * it1 * r["cldice_it"])
        / side_by_side,
        "train stage 2": (n_seeds + extra * len(options)) * it2 * r["stage2_it"] / side_by_side,
        "validation": (
            (
                (n_seeds * 4 + extra) * n_val_runs1 * n_val * (r["predict"] + r["metrics"])
                + (n_seeds + extra * len(options)) * n_val_runs * n_val * r["stage2_validation"]
            )
            / side_by_side
            # the output rule's choice: every stage-1 variant of every seed, both rules
            + n_seeds * 4 * n_val * (r["predict"] + 2 * r["metrics"])
            if settings.validate
            else 0.0
        ),
    }
    # both output rules: the two four-class variants (amc, amc+gul) give a second mask to
    # repair and score, stage 1 and stage 2 (two-class masks are the same, scored once)
    per_seed = 4 * (r["predict"] + r["repair"] + 2 * r["metrics"])
    per_seed += 2 * (r["repair"] + 2 * r["metrics"])
    per_extra = r["predict"] + r["metrics"] + 2 * len(settings.stage2_options) * (
        r["repair"] + r["metrics"]
    )
    out["evaluate"] = n_test * (
        n_seeds * per_seed + extra * per_extra + r["baseline"] + 2 * r["metrics"]
    )
    # the stage-2 sources (a tree parse each) of the training and validation cases
    out["data"] += settings.n_cases * r["prepare"]
    out["total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


#: How many times more training work two one-thread trainings side by side do per minute than
#: one two-thread training on a 2-core machine (``ReproduceSettings.cpu_trainings``; measured
#: on the AVX2 machine of 2026-12-06, the step costs above on the AVX-512 one):
#: ``benchmarks/bench_parallel_cpu.py`` (benchmarks/RESULTS.md, "Parallel trainings on the CPU").
CPU_SIDE_BY_SIDE_SPEEDUP: float = 1.48

#: Rough seconds per step of the gpu profile on one NVIDIA H200 with 16 cores, for sizing
#: ``benchmarks/gpu_session.sh``. Measured in the 2026-11-26 session (benchmarks/RESULTS.md):
#: stage-1 training 8 it/s with the real data pipeline (``stage1_it``, replaced by the rate
#: the session measures), stage 2 about 1 it/s (its breakage simulations), 9 standard
#: phantoms generated and prepared in 83 s on 12 processes. Not measured there, assumed: the
#: sliding window, the repair, the metrics (CPU, 0.7 mm skeletons) and the baseline.
GPU_STEP_SECONDS: dict[str, float] = {
    "phantom": 7.0,
    "prepare": 2.0,
    "stage1_it": 0.125,
    "cldice_it": 0.15,
    "stage2_it": 1.0,
    "predict": 2.0,
    "repair": 4.0,
    "metrics": 6.0,
    "baseline": 10.0,
    "stage2_validation": 8.0,
}


def size_to_budget(
    settings: ReproduceSettings,
    budget_s: float,
    rates: dict,
    *,
    designs=((3, 10), (3, 5), (2, 5), (2, 3), (1, 3), (1, 2)),
    floor: int = 50,
) -> tuple[ReproduceSettings, dict]:
    """The largest design that fits a time budget: the first (training seeds, test cases) of
    ``designs`` whose estimate at ``floor`` iterations fits, then the longest training
    (stage 2: a quarter of stage 1's iterations, at least ``floor``) that still fits.

    Parameters
    ----------
    settings : ReproduceSettings
        The profile's settings (cohort, networks, options).
    budget_s : float
        Seconds available for the whole reproduction.
    rates : dict
        Seconds per step (:data:`GPU_STEP_SECONDS` or :data:`CPU_STEP_SECONDS` keys).
    designs : sequence of (int, int)
        (training seeds, test cases), most wanted first.
    floor : int
        Fewest iterations of any model.

    Returns
    -------
    settings : ReproduceSettings
        With ``seeds``, ``n_test`` and both training lengths set (the smallest design at
        the floor when nothing fits).
    estimate : dict
        :func:`estimate_seconds` of it.
    """
    def sized(n_seeds: int, n_test: int, it1: int) -> ReproduceSettings:
        it2 = max(floor, it1 // 4)
        return replace(
            settings,
            seeds=tuple(range(n_seeds)),
            n_test=n_test,
            extra_seeds=min(settings.extra_seeds, n_seeds),
            stage1_train=replace(settings.stage1_train, iterations=it1, validate_every=it1,
                                 checkpoint_every=min(settings.stage1_train.checkpoint_every, it1)),
            stage2_train=replace(settings.stage2_train, iterations=it2,
                                 validate_every=min(settings.stage2_train.validate_every, it2),
                                 checkpoint_every=min(settings.stage2_train.checkpoint_every, it2)),
        )  # fmt: skip

    for n_seeds, n_test in designs:
        if estimate_seconds(sized(n_seeds, n_test, floor), rates)["total"] > budget_s:
            continue
        low, high = floor, floor
        while estimate_seconds(sized(n_seeds, n_test, high * 2), rates)["total"] <= budget_s:
            low, high = high * 2, high * 2
            if high > 10**6:
                break
        high *= 2
        while high - low > max(10, low // 50):
            mid = (low + high) // 2
            fits = estimate_seconds(sized(n_seeds, n_test, mid), rates)["total"] <= budget_s
            low, high = (mid, high) if fits else (low, mid)
        best = sized(n_seeds, n_test, low // 10 * 10 or floor)
        return best, estimate_seconds(best, rates)
    smallest = sized(*designs[-1], floor)
    return smallest, estimate_seconds(smallest, rates)
