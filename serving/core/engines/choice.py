"""`engine: auto` and `precision: auto`: which engine and precision serve a model on this machine.

Why measured rather than assumed: which engine and precision is faster depends on the model family
and the CPU's instruction set, so each candidate is loaded and timed on a batch of one at
start-up, and the fastest is kept (docs/cpu-engines.md).

Which candidates: with `engine: auto`, Paddle Inference, plus OpenVINO on CPU where it is installed
and reads the program; on GPU only Paddle Inference (with TensorRT where configured). With
`precision: auto`, fp32, plus a lower precision only where both hold:
  * the CPU has instructions for it (int8 with AVX2 or better: OpenVINO's int8 kernels are
    faster than fp32 there too, and VNNI or AMX speed them up further; bf16 with AVX512-BF16
    or AMX), and
  * the model folder records a top-1 agreement with fp32 of at least MIN_AGREEMENT for that
    engine and precision (`ModelMeta.agreement`, written by serving.tools.quantize and
    serving.tools.precision_check --record), so an unchecked model is never served in int8.
A folder holding Paddle's own quantised program (MODEL_DIR-int8) only runs as Paddle int8.
Every candidate left out is reported with the reason; the summary goes to the service's log.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.core.engines import openvino as openvino_engine
from serving.core.engines import paddle as paddle_engine
from serving.core.engines.base import (
    AUTO,
    ENGINES,
    INT8_SOURCE_KEY,
    LoadedProgram,
    PredictorError,
    PredictorSettings,
)
from serving.core.metadata import ModelMeta

# The share of validation clips on which a lower precision must give fp32's top-1 before `auto`
# may serve it (and before serving.tools.quantize publishes an OpenVINO int8 model).
MIN_AGREEMENT = 0.995
# Start-up timing: one untimed run (kernels are compiled on the first), then the median of these.
TIMED_RUNS = 3


@dataclass(frozen=True)
class Trial:
    """One candidate's start-up timing, or why it was left out (`ms` None)."""

    engine: str
    precision: str
    ms: float | None = None
    left_out: str = ""

    @property
    def name(self) -> str:
        return f"{self.engine}/{self.precision}"


@dataclass(frozen=True)
class Selection:
    """The loaded program, the settings it runs with (engine and precision concrete) and how
    they were chosen."""

    program: LoadedProgram
    settings: PredictorSettings
    trials: tuple[Trial, ...]

    def summary(self) -> str:
        """One log line: the choice, each candidate's time and each candidate left out."""
        chosen = f"{self.settings.engine}/{self.settings.precision}"
        timed = [t for t in self.trials if t.ms is not None]
        left_out = [t for t in self.trials if t.left_out]
        parts = [f"inference engine {chosen}"]
        if len(timed) > 1:
            parts.append("fastest at start-up (batch 1, median of "
                         f"{TIMED_RUNS}): " + ", ".join(f"{t.name} {t.ms:.1f} ms" for t in timed))
        if left_out:
            parts.append("left out: " + "; ".join(f"{t.name}: {t.left_out}" for t in left_out))
        return "; ".join(parts)


def fast_precisions() -> frozenset[str]:
    """Precisions this CPU has instructions for: fp32 always, int8 with AVX2 or better, bf16
    with AVX512-BF16/AMX (Paddle's CPU checks). Whether int8 is faster than fp32 for a model is
    then measured at start-up, not assumed from the instruction set."""
    import paddle

    core = paddle.base.core
    fast = {"fp32"}
    if core.supports_int8():
        fast.add("int8")
    if core.supports_bfloat16_fast_performance():
        fast.add("bf16")
    return frozenset(fast)


def _engines(settings: PredictorSettings) -> tuple[list[str], list[Trial]]:
    if settings.engine != AUTO:
        return [settings.engine], []
    if settings.device != "cpu":
        return ["paddle"], []
    reason = openvino_engine.unavailable_reason()
    if reason:
        return ["paddle"], [Trial("openvino", "*", left_out=reason)]
    return list(ENGINES), []


def _recorded(meta: ModelMeta, engine: str, precision: str) -> str:
    """Why `auto` may not serve `precision` on `engine` for want of a recorded agreement, or ""."""
    agreement = meta.top1_agreement(engine, precision)
    if agreement is None:
        return "no recorded top-1 agreement with fp32 for this model"
    if agreement < MIN_AGREEMENT:
        return f"recorded top-1 agreement {agreement:.1%} < {MIN_AGREEMENT:.1%}"
    return ""


def _unusable(model_dir: Path, meta: ModelMeta, settings: PredictorSettings, engine: str,
              precision: str, fast: frozenset[str]) -> str:
    """Why (engine, precision) is no candidate for this model folder here, or "". A program
    that does not match the precision (Paddle int8 on an fp32 folder, say) is left to the
    engine's own load check, which says what to do."""
    if settings.precision == AUTO and precision != "fp32" and INT8_SOURCE_KEY not in meta.source:
        if precision not in fast:
            return "this CPU has no native instructions for it"
        reason = _recorded(meta, engine, precision)
        if reason:
            return reason
    if engine == "openvino":
        return openvino_engine.unreadable_reason(model_dir, meta, precision)
    return ""


def candidates(model_dir: Path, meta: ModelMeta, settings: PredictorSettings,
               fast: frozenset[str]) -> tuple[list[PredictorSettings], list[Trial]]:
    """Concrete settings to try, and the candidates left out with the reason; `fast` is what
    `fast_precisions()` says of this CPU."""
    engines, left_out = _engines(settings)
    if settings.precision != AUTO:
        precisions = [settings.precision]
    elif INT8_SOURCE_KEY in meta.source:
        precisions = ["int8"]
    else:
        precisions = ["fp32", "int8", "bf16"]
    explicit = settings.engine != AUTO and settings.precision != AUTO
    found: list[PredictorSettings] = []
    for engine in engines:
        for precision in precisions:
            reason = "" if explicit else _unusable(model_dir, meta, settings, engine, precision,
                                                   fast)
            if reason:
                left_out.append(Trial(engine, precision, left_out=reason))
            else:
                found.append(dataclasses.replace(settings, engine=engine, precision=precision))
    return found, left_out


def load(model_dir: Path, meta: ModelMeta, settings: PredictorSettings) -> LoadedProgram:
    """The program loaded by the engine `settings` name (concrete engine and precision)."""
    engine = paddle_engine if settings.engine == "paddle" else openvino_engine
    return engine.load(model_dir, meta, settings)


def time_programs(programs: list[LoadedProgram], probe: np.ndarray,
                  runs: int = TIMED_RUNS) -> list[float]:
    """Median milliseconds of `runs` runs of `probe` per program, after one untimed run each.
    The programs take turns run by run, so a burst of load elsewhere on the machine falls on
    all of them rather than on whichever was being timed."""
    for program in programs:
        program.runners[0](probe)
    times: list[list[float]] = [[] for _ in programs]
    for _ in range(runs):
        for program, program_times in zip(programs, times):
            started = time.perf_counter()
            program.runners[0](probe)
            program_times.append((time.perf_counter() - started) * 1000.0)
    return [statistics.median(program_times) for program_times in times]


def choose(model_dir: Path, meta: ModelMeta, settings: PredictorSettings) -> Selection:
    """Loads the one candidate, or loads and times every candidate and keeps the fastest."""
    fast = fast_precisions() if settings.device == "cpu" else frozenset({"fp32"})
    found, left_out = candidates(model_dir, meta, settings, fast)
    if not found:
        raise PredictorError(
            f"engine {settings.engine}, precision {settings.precision}: nothing can run "
            f"{model_dir} here (" + "; ".join(f"{t.name}: {t.left_out}" for t in left_out) + ")")
    if len(found) == 1:
        return Selection(load(model_dir, meta, found[0]), found[0], tuple(left_out))
    probe = np.random.RandomState(0).standard_normal(
        (1, *meta.inference.input_shape[1:])).astype(np.float32)
    loaded: list[tuple[PredictorSettings, LoadedProgram]] = []
    for candidate in found:
        try:
            loaded.append((candidate, load(model_dir, meta, candidate)))
        except PredictorError as exc:
            left_out.append(Trial(candidate.engine, candidate.precision, left_out=str(exc)))
    if not loaded:
        raise PredictorError("no candidate engine could load the model: "
                             + "; ".join(f"{t.name}: {t.left_out}" for t in left_out))
    times = time_programs([program for _, program in loaded], probe)
    trials = [Trial(candidate.engine, candidate.precision, ms=ms)
              for (candidate, _), ms in zip(loaded, times)]
    _, (best, program) = min(zip(times, loaded), key=lambda entry: entry[0])
    return Selection(program, best, tuple(trials + left_out))
