"""The benchmark's one table (Markdown, printed and kept) and its intake plot (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.main import TASK_RESULT_KEEP_S

INTAKE_TARGET = 0.70
INTAKE_P99_TARGET_MS = 25.0
WEBHOOK_TARGET = 0.60
BUDGET_DISPATCH_TARGET = 0.8
DISPATCH_TARGET = 0.60
ADDED_P99_TARGET_MS = 50.0


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _ms(p50: float, p99: float) -> str:
    return f"{p50:.1f} / {p99:.1f} ms"


def table(results: dict[str, Any]) -> str:
    rows = [
        "| # | measure | vidhook | ceiling / comparison | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    intake = results["intake"]
    v, c = intake["vidhook"], intake["ceiling"]
    ratio = v["rps"] / c["rps"]
    rows.append(
        f"| 1 | intake `POST /v1/jobs`, req/s (best concurrency: {intake['peak_level']} / "
        f"{intake['ceiling_peak_level']}) | {v['rps']:.0f} | {c['rps']:.0f} (Starlette + one "
        f"MULTI) | {ratio:.0%} | ≥ 70 %: {_mark(ratio >= INTAKE_TARGET)} |"
    )
    rows.append(
        f"| 1 | intake p50 / p99 at that concurrency | {_ms(v['p50_ms'], v['p99_ms'])} | "
        f"{_ms(c['p50_ms'], c['p99_ms'])} | | |"
    )
    half = intake["half_load"]
    hv, hc = half["vidhook"], half["ceiling"]
    rows.append(
        f"| 1 | intake p50 / p99 at half load ({intake['half_rate']} req/s, paced) | "
        f"{_ms(hv['p50_ms'], hv['p99_ms'])} | {_ms(hc['p50_ms'], hc['p99_ms'])} | | "
        f"p99 ≤ 25 ms: {_mark(hv['p99_ms'] <= INTAKE_P99_TARGET_MS)} |"
    )
    hooks = results["webhooks"]
    wv, wc = hooks["vidhook"], hooks["ceiling"]
    ratio = wv["rps"] / wc["rps"]
    rows.append(
        f"| 2 | verified fal webhooks/s (Ed25519 + record + notify enqueue; c={hooks['level']}) "
        f"| {wv['rps']:.0f} | {wc['rps']:.0f} (same ceiling) | {ratio:.0%} | "
        f"≥ 60 %: {_mark(ratio >= WEBHOOK_TARGET)} |"
    )
    dispatch = results["dispatch"]
    dv, dc = dispatch["vidhook"], dispatch["ceiling"]
    ratio = dv["rate"] / dc["rate"]
    rows.append(
        f"| 3 | dispatch: jobs submitted to the simulator/s, one worker process | "
        f"{dv['rate']:.0f} | {dc['rate']:.0f} (ARQ no-op jobs) | {ratio:.0%} | "
        f"≥ 60 %: {_mark(ratio >= DISPATCH_TARGET)} |"
    )
    if "budget" in results:
        budget = results["budget"]
        bv, bc = budget["vidhook"], budget["ceiling"]
        ratio = bv["rate"] / bc["rate"]
        rows.append(
            f"| 7 | dispatch with FAL_MAX_IN_FLIGHT in place: jobs submitted to a zero-latency "
            f"fal/s, one worker process ({bv['leases_held']} leases held after, "
            f"{bv['evalsha_per_job']:.1f} Lua steps per job) | {bv['rate']:.0f} | "
            f"{bc['rate']:.0f} (ARQ task: one POST, same client) | {ratio:.0%} | "
            f"≥ 80 %: {_mark(ratio >= BUDGET_DISPATCH_TARGET)} |"
        )
    for rate, latency in results["latency"].items():
        for key, label in (
            ("intake_to_submit_ms", "intake sent → fal submit received"),
            ("webhook_to_callback_ms", "fal webhook sent → client callback received"),
        ):
            figure = latency[key]
            rows.append(
                f"| 4 | added latency, {label}, p50 / p99 at {rate} jobs/s | "
                f"{_ms(figure['p50'], figure['p99'])} | | | p99 ≤ 50 ms: "
                f"{_mark(figure['p99'] <= ADDED_P99_TARGET_MS)} |"
            )
    calls = results["calls"]
    cv, cf = calls["vidhook"], calls["fal_client"]
    rows.append(
        f"| 5 | HTTP calls fal received per completed job ({calls['model_delay_s']:.0f} s "
        f"model delay + render) | {_calls(cv)} | {_calls(cf)} (fal-client `subscribe`) | | |"
    )
    poll = calls.get("vidhook_poll_mode")
    if poll:
        rows.append(
            f"| 5 | … the same in poll mode (no PUBLIC_BASE_URL; polls from "
            f"{poll['poll_interval_s']:.0f} s, x1.5, up to {poll['poll_max_interval_s']:.0f} s) | "
            f"{_calls(poll)} | | | |"
        )
    rows.append(
        f"| 5 | connections to fal held per in-flight job | "
        f"{cv.get('connections_per_inflight_job', 0):.2f} | "
        f"{cf.get('connections_per_inflight_job', 0):.2f} (fal-client) | | |"
    )
    memory = results["memory"]
    rows.append(
        f"| 6 | Redis bytes per finished job, result payload excluded / included | "
        f"{memory['excluded']:.0f} / {memory['included']:.0f} B | | | |"
    )
    rows.append(
        f"| 6 | … plus ARQ's kept task results (expire {TASK_RESULT_KEEP_S} s after each task) | "
        f"{memory['arq_results']:.0f} B | | | ≤ 2 KB without the result: "
        f"{'met' if memory['excluded'] <= 2048 else 'missed'} |"
    )
    breakdown = ", ".join(
        f"{label} {value:.0f}"
        for label, value in sorted(memory["per_key"].items(), key=lambda item: -item[1])
        if not label.startswith("(") or label == "(state changes)"
    )
    rows.append(f"| 6 | breakdown per job (B; state changes: entries) | {breakdown} | | | |")
    poll = results["longpoll"]
    rows.append(
        f"| 7 | Redis commands per long-poll, {poll['polls']} concurrent `?wait=60`, held "
        f"{poll['held_s']:.0f} s | {poll['commands_per_long_poll']:.2f} | "
        f"{poll['naive_per_client']} (polling every 0.5 s, the hold alone) | | bounded |"
    )
    m = results["machine"]
    header = (
        f"`{results['command']}` on {m['date']}: {m['cpus']} cores, {m['cpu_model']}, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"Redis {m['redis']}, load from {results['generator']} {m['wrk']}; "
        f"the run took {results['duration_s']:.0f} s."
    )
    return header + "\n\n" + "\n".join(rows)


def _calls(side: dict[str, Any]) -> str:
    if not side.get("completed"):
        return "no job completed"
    kinds = side["kinds_per_job"]
    parts = ", ".join(f"{name} {value:.1f}" for name, value in sorted(kinds.items()))
    return f"{side['calls_per_job']:.1f} ({parts})"


def plot(results: dict[str, Any], path: Path) -> None:
    """Intake throughput and p99 against concurrency, vidhook beside its ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["intake"]["curves"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    styles = {"vidhook": ("tab:blue", "o"), "ceiling": ("tab:gray", "s")}
    labels = {"vidhook": "vidhook POST /v1/jobs", "ceiling": "ceiling: Starlette + one MULTI"}
    for name, curve in curves.items():
        levels = sorted(int(level) for level in curve)
        color, marker = styles[name]
        left.plot(
            levels,
            [curve[str(x)]["rps"] for x in levels],
            marker=marker,
            color=color,
            label=labels[name],
        )
        right.plot(
            levels,
            [curve[str(x)]["p99_ms"] for x in levels],
            marker=marker,
            color=color,
            label=labels[name],
        )
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent connections (wrk)")
        axis.grid(True, alpha=0.3)
    left.set_ylabel("requests / s")
    left.set_ylim(bottom=0)
    left.set_title("intake throughput")
    right.set_ylabel("p99 latency (ms)")
    right.set_yscale("log")
    right.set_title("intake p99")
    right.legend(loc="upper left", fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"vidhook intake vs its ceiling, same run: {m['cpus']} cores, {m['cpu_model']}, "
        f"{m['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
