"""Benchmark tables as Markdown (printed and saved), CSV and PNG bar charts (matplotlib Agg)."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from serving.tools.precision_check import Agreement  # noqa: E402
from bench.decoding import DecodeTiming  # noqa: E402
from bench.hostile_load import HostileLoadResult  # noqa: E402
from bench.model_zoo import ModelTiming  # noqa: E402
from bench.serving_load import LoadResult  # noqa: E402


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[object, ...]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.headers) + "|")
        lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> None:
        """Spreads become three columns (median, min, max) so the CSV stays numeric."""
        headers: list[str] = [] if self.rows else list(self.headers)
        for header, value in zip(self.headers, self.rows[0] if self.rows else ()):
            headers += ([f"{header} median", f"{header} min", f"{header} max"]
                        if hasattr(value, "median") else [header])
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(headers)
            for row in self.rows:
                cells: list[object] = []
                for value in row:
                    cells += ([round(value.median, 2), round(value.low, 2), round(value.high, 2)]
                              if hasattr(value, "median") else [value])
                writer.writerow(cells)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def model_table(timings: Sequence[ModelTiming], clip_label: str, note: str) -> Table:
    return Table(
        f"Model families on a {clip_label} clip (ms, median (min-max))",
        ("model", "backbone", "frames", "input", "weights", "engine", "precision", "threads",
         "preprocessing ms", "inference ms", "total ms"),
        [(t.model, t.backbone, t.frames, f"{t.input_px}px", t.weights, t.engine, t.precision,
          t.threads, t.preprocess_ms, t.inference_ms, t.total_ms) for t in timings], note)


def serving_table(results: Sequence[LoadResult], note: str) -> Table:
    return Table(
        "Serving, REST end to end", ("request", "clip", "precision", "request MB", "concurrency",
                                     "requests", "failed", "p50 ms", "p95 ms", "p99 ms",
                                     "throughput req/s"),
        [(r.kind, r.clip, r.precision, r.request_mb, r.concurrency, r.requests, r.failed,
          r.p50_ms, r.p95_ms, r.p99_ms, f"{r.throughput_rps:.2f}") for r in results], note)


def _series(results: Sequence[LoadResult]) -> dict[str, list[LoadResult]]:
    """The results of each (request kind, clip, precision), by concurrency, keyed by a label."""
    keys = sorted({(r.kind, r.clip, r.precision) for r in results})
    return {" ".join(key): sorted((r for r in results if (r.kind, r.clip, r.precision) == key),
                                  key=lambda r: r.concurrency) for key in keys}


def scaling_note(results: Sequence[LoadResult]) -> str:
    """Throughput at the highest concurrency over throughput at concurrency 1, per series: the
    share of the single-stream rate the service keeps under load (on CPU one predictor runs at
    a time, so the useful parallelism is 1 and 1.0 is the ideal)."""
    parts = []
    for label, levels in _series(results).items():
        if len(levels) > 1 and levels[0].concurrency == 1 and levels[0].throughput_rps > 0:
            ratio = levels[-1].throughput_rps / levels[0].throughput_rps
            parts.append(f"{label}: {ratio:.2f}")
    return ("Throughput at concurrency " + str(max(r.concurrency for r in results)) +
            " / at 1: " + "; ".join(parts) + ".") if parts else ""


# model label, weights, engine, precision, agreement (against fp32 on the same engine)
PrecisionRow = tuple[str, str, str, str, Agreement]


def precision_table(rows: Sequence[PrecisionRow], note: str) -> Table:
    return Table(
        "Lower precisions against fp32 (synthetic test split)",
        ("model", "weights", "engine", "precision", "clips", "fp32 top-1 classes",
         "top-1 agreement", "max abs logit diff", "accuracy fp32", "accuracy low", "fp32 ms",
         "low ms", "speed-up"),
        [(label, weights, engine, precision, a.clips, a.reference_classes,
          f"{a.top1_agreement:.1%}", f"{a.max_abs_diff:.3g}",
          *((f"{a.reference_accuracy:.1%}", f"{a.candidate_accuracy:.1%}")
            if weights == "trained" else ("-", "-")),
          a.reference_ms, a.candidate_ms, f"{a.speedup:.2f}x")
         for label, weights, engine, precision, a in rows], note)


def decoding_table(timings: Sequence[DecodeTiming], note: str) -> Table:
    return Table(
        "Decoding: sampled frames only versus every frame (ms, median (min-max))",
        ("clip", "decoder", "sampled frames", "sparse ms", "full ms"),
        [(t.clip, t.backend, t.sampled_frames, t.sparse_ms, t.full_ms) for t in timings], note)


def hostile_table(result: HostileLoadResult, note: str) -> Table:
    return Table(
        "Honest clients beside hostile ones, REST end to end",
        ("honest clients", "hostile clients", "honest requests", "p50 ms alone",
         "p50 ms with hostile", "p50 ratio", "p95 ms alone", "p95 ms with hostile",
         "wrong or lost honest answers"),
        [(result.concurrency, result.hostile_clients, result.honest_requests,
          result.alone_p50_ms, result.attacked_p50_ms, f"{result.p50_ratio:.2f}",
          result.alone_p95_ms, result.attacked_p95_ms, result.wrong_or_lost)], note)


def plot_hostile(results: Sequence[HostileLoadResult], path: Path) -> None:
    (result,) = results
    fig, ax = plt.subplots(figsize=(5, 3.5))
    runs = ("alone", f"with {result.hostile_clients} hostile")
    ax.bar([0, 1], [result.alone_p50_ms, result.attacked_p50_ms], width=0.35, label="p50")
    ax.bar([0.35, 1.35], [result.alone_p95_ms, result.attacked_p95_ms], width=0.35, label="p95")
    ax.set_xticks([0.175, 1.175], runs)
    ax.set_ylabel(f"honest latency, ms ({result.concurrency} clients)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_models(timings: Sequence[ModelTiming], path: Path) -> None:
    names = [f"{t.model} {t.backbone} {t.frames}f {t.engine} {t.precision}" for t in timings]
    pre = [t.preprocess_ms.median for t in timings]
    inf = [t.inference_ms.median for t in timings]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.5))
    ax.barh(names, pre, label="preprocessing")
    ax.barh(names, inf, left=pre, label="inference")
    spans = [(t.total_ms.median - t.total_ms.low, t.total_ms.high - t.total_ms.median)
             for t in timings]
    ax.errorbar([t.total_ms.median for t in timings], names, xerr=list(zip(*spans)), fmt="none",
                ecolor="black", capsize=3, label="total min-max")
    ax.set_xlabel("ms per video (median)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_precision(rows: Sequence[PrecisionRow], path: Path) -> None:
    """Inference speed-up over fp32 per model and precision, each bar labelled with its top-1
    agreement (a fast precision is worth nothing if the answers change)."""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    names = [f"{label} {engine} {precision}" for label, _, engine, precision, _ in rows]
    bars = ax.barh(names, [a.speedup for *_, a in rows])
    ax.bar_label(bars, [f"{a.top1_agreement:.0%} agree" for *_, a in rows], padding=3,
                 fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(0, 1.25 * max([1.0, *(a.speedup for *_, a in rows)]))  # room for the labels
    ax.set_xlabel("inference speed-up over fp32 (median ms ratio)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_serving(results: Sequence[LoadResult], path: Path) -> None:
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in _series(results).items():
        levels = [r.concurrency for r in points]
        latency.plot(levels, [r.p50_ms for r in points], marker="o", label=label)
        throughput.plot(levels, [r.throughput_rps for r in points], marker="o", label=label)
    for ax, label in ((latency, "p50 latency, ms"), (throughput, "throughput, requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    latency.set_yscale("log")
    latency.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_decoding(timings: Sequence[DecodeTiming], path: Path) -> None:
    labels = [f"{t.clip}\n{t.backend}" for t in timings]
    positions = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels)), 4))
    ax.bar([p - 0.2 for p in positions], [t.sparse_ms.median for t in timings], width=0.4,
           label="sampled frames")
    ax.bar([p + 0.2 for p in positions], [t.full_ms.median for t in timings], width=0.4,
           label="every frame")
    ax.set_xticks(list(positions), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per clip (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
