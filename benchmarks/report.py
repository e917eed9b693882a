"""The report: results.json, report.md and PNG charts under docs/benchmarks/."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import orjson

from benchmarks.initial_sync import InitialSyncResult
from benchmarks.latency import LatencyResult
from benchmarks.profiling import Profile
from benchmarks.scale_out import ScaleOutResult
from benchmarks.state import TARGET, StoreResult
from benchmarks.steady import SteadyResult

GB = 1024**3
MB = 1024**2


@dataclass
class Results:
    run_id: str
    started: str
    quick: bool
    machine: dict[str, Any]
    sizes: dict[str, Any]
    steady: SteadyResult | None = None
    latency: LatencyResult | None = None
    initial_sync: InitialSyncResult | None = None
    state: list[StoreResult] | None = None
    scale_out: ScaleOutResult | None = None
    # scenario letter -> what went wrong, shown in the report instead of a figure
    errors: dict[str, str] = field(default_factory=dict)
    minutes: float = 0.0


def write(results: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(
        orjson.dumps(dataclasses.asdict(results), option=orjson.OPT_INDENT_2)
    )
    charts = _charts(results, out)
    (out / "report.md").write_text(_markdown(results, charts))


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _goals(r: Results) -> list[str]:
    rows = ["| Goal | Target | Measured | Baselines (same run) | Result |", "|---|---|---|---|---|"]
    if r.steady:
        s = r.steady
        vs_bare = s.forwarder.events_per_s / s.bare_faust.events_per_s
        vs_table = s.forwarder.events_per_s / s.table_send.events_per_s
        rows.append(
            f"| Steady state vs a bare Faust agent | ≥ 0.70x | {vs_bare:.2f}x "
            f"({_fmt(s.forwarder.events_per_s)} events/s) | bare Faust agent "
            f"{_fmt(s.bare_faust.events_per_s)} events/s | {_verdict(vs_bare >= 0.7)} |"
        )
        rows.append(
            f"| Steady state vs one table write + one send per event | ≥ 3x | {vs_table:.2f}x "
            f"| Faust table write + send {_fmt(s.table_send.events_per_s)} events/s "
            f"| {_verdict(vs_table >= 3)} |"
        )
    else:
        rows.append(
            f"| Steady state (a) | | not measured: {r.errors.get('a', 'not selected')} | | |"
        )
    if r.latency:
        lat = r.latency
        rows.append(
            f"| p99 latency at half the maximum load | < 50 ms | p99 {lat.p99_ms:.1f} ms "
            f"(p50 {lat.p50_ms:.1f}, max {lat.max_ms:.1f}) | offered "
            f"{_fmt(lat.offered_events_per_s)} events/s = half of (a) | "
            f"{_verdict(lat.p99_ms < 50)} |"
        )
    else:
        rows.append(_unmeasured("p99 latency (b)", "< 50 ms", r.errors.get("b")))
    if r.initial_sync:
        sync = r.initial_sync
        if sync.implemented:
            rows.append(
                f"| Initial sync of {_fmt(sync.members)} members | ≥ 50,000 records/s "
                f"| {_fmt(sync.outbound_per_s)} records/s | steady-state outbound "
                f"{_fmt(r.steady.forwarder.outbound_per_s) if r.steady else '-'} records/s "
                f"| {_verdict(sync.outbound_per_s >= 50_000)} |"
            )
        else:
            rows.append(
                f"| Initial sync of {_fmt(sync.members)} members | ≥ 50,000 records/s "
                "| **not implemented**: no record within the wait after the connection "
                "became active | | **missed** |"
            )
    else:
        rows.append(_unmeasured("Initial sync (c)", "≥ 50,000 records/s", r.errors.get("c")))
    rocks = next((s for s in r.state or [] if s.store == "rocksdb"), None)
    if rocks:
        note = "" if rocks.profiles >= TARGET else f", extrapolated from {_fmt(rocks.profiles)}"
        rows.append(
            f"| RSS of 1,000,000 profiles, RocksDB store | < 1 GB "
            f"| {rocks.target_rss_bytes / GB:.2f} GB{note} "
            f"| empty worker {rocks.empty_rss_bytes / MB:.0f} MB "
            f"| {_verdict(rocks.target_rss_bytes < GB)} |"
        )
        rows.append(
            f"| Recovery of 1,000,000 profiles, RocksDB store | < 60 s "
            f"| {rocks.target_recovery_s:.1f} s{note} "
            f"| empty worker start {rocks.empty_start_s:.1f} s "
            f"| {_verdict(rocks.target_recovery_s < 60)} |"
        )
    else:
        rows.append(_unmeasured("State (d)", "< 1 GB, < 60 s", r.errors.get("d")))
    if r.scale_out:
        so = r.scale_out
        rows.append(
            f"| 2 workers vs 1 on {so.partitions} partitions | ≥ 1.7x | {so.ratio:.2f}x "
            f"({_fmt(so.two.events_per_s)} events/s) | 1 worker {_fmt(so.one.events_per_s)} "
            f"events/s | {_verdict(so.ratio >= 1.7)} |"
        )
    else:
        rows.append(_unmeasured("Scale-out (e)", "≥ 1.7x", r.errors.get("e")))
    return rows


def _unmeasured(goal: str, target: str, error: str | None) -> str:
    # one line in the table; the whole error is under "Failed scenarios"
    why = f"**failed**: {error.splitlines()[0]}" if error else "not selected in this run"
    return f"| {goal} | {target} | {why} | | {'**missed**' if error else '-'} |"


def _throughput_rows(steady: SteadyResult) -> list[str]:
    rows = [
        "| Consumer under test | Input events | Outbound records | Seconds | Events/s "
        "| Outbound/s | Events/s vs raw aiokafka |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in (steady.raw, steady.bare_faust, steady.table_send, steady.forwarder):
        rows.append(
            f"| {t.name} | {_fmt(t.events)} | {_fmt(t.outbound)} | {t.seconds:.2f} "
            f"| {_fmt(t.events_per_s)} | {_fmt(t.outbound_per_s)} "
            f"| {t.events_per_s / steady.raw.events_per_s:.3f} |"
        )
    return rows


def _profile_rows(profile: Profile, during: str) -> list[str]:
    if not profile.samples:
        return ["py-spy took no samples (it needs permission to ptrace the worker)."]
    rows = [
        f"py-spy, {profile.samples} samples of the worker (100 Hz, active time only) "
        f"during {during}.",
        "",
        "Where the CPU was (self time, top frames):",
        "",
        "| Frame | Share of samples |",
        "|---|---|",
    ]
    rows += [f"| `{frame}` | {share:.1%} |" for frame, share in profile.self_top]
    rows += [
        "",
        "The project's own code on the stack (inclusive time):",
        "",
        "| Frame | Share of samples |",
        "|---|---|",
    ]
    rows += [f"| `{frame}` | {share:.1%} |" for frame, share in profile.own_code]
    return rows


def _markdown(r: Results, charts: list[str]) -> str:
    m = r.machine
    lines = [
        "# Benchmarks (issue 7)",
        "",
        f"Run `{r.run_id}`, {r.started}, {r.minutes:.1f} minutes"
        + (" (`--quick`: small counts, not the report's figures)" if r.quick else "")
        + f". Machine: {m['cores']} cores, {m['memory_gb']:.0f} GB, Python {m['python']}, "
        f"faust-streaming {m['faust']}, aiokafka {m['aiokafka']}; the Kafka broker "
        f"({m['bootstrap']}) runs on the same machine and shares its cores, and other work may "
        "share them too, so absolute figures drift between runs: each goal is read against "
        "baselines measured in the same run.",
        "",
        "Reproduce with `make bench` (`python -m benchmarks.run --help` for sizes and "
        "`--only`). Sizes of this run: "
        + ", ".join(
            f"{key} {_fmt(value) if isinstance(value, int) else value}"
            for key, value in r.sizes.items()
        )
        + ".",
        "",
        "## Goals",
        "",
        *_goals(r),
        "",
    ]
    if r.errors:
        lines += ["## Failed scenarios", ""]
        for letter, error in r.errors.items():
            lines += [f"({letter}):", "", "```", error, "```", ""]
    if r.steady:
        lines += [
            "## (a) Steady state",
            "",
            f"{_fmt(r.steady.profiles)} profiles, each with one profile update (3 identities, "
            "5 attributes) and one membership add, on 1 partition per input topic; the "
            "audience is connected to 3 outputs accepting different identity types, so each "
            "profile yields 3 outbound adds. All four consumers read the same preloaded "
            "input and are timed from their first to their last processed record (outbound "
            "arrivals read live, or the iterating agent's own clock); outbound counts are "
            "checked before a figure is reported.",
            "",
            *_throughput_rows(r.steady),
            "",
        ]
        if r.steady.profile:
            lines += [
                "### Where the forwarder's time goes",
                "",
                *_profile_rows(r.steady.profile, "the forwarder's run of (a)"),
                "",
            ]
    if r.latency:
        lat = r.latency
        lines += [
            "## (b) Latency at half load",
            "",
            f"{_fmt(lat.offered_events_per_s)} events/s offered for {lat.seconds:.0f} s "
            f"({_fmt(lat.outbound)} outbound records); latency is an outbound record's "
            "arrival at a consumer minus its input record's produce time (carried in "
            "`timestamp_ms`).",
            "",
            "| p50 | p99 | max |",
            "|---|---|---|",
            f"| {lat.p50_ms:.1f} ms | {lat.p99_ms:.1f} ms | {lat.max_ms:.1f} ms |",
            "",
        ]
    if r.initial_sync:
        sync = r.initial_sync
        lines += ["## (c) Initial sync", ""]
        if sync.implemented:
            lines.append(
                f"{_fmt(sync.members)} members: {_fmt(sync.outbound)} adds in "
                f"{sync.seconds:.1f} s from the connection's publish (first after "
                f"{sync.first_after_s:.1f} s): {_fmt(sync.outbound_per_s)} records/s."
            )
            if sync.profile:
                lines += ["", "### Where the initial sync's time goes", ""]
                lines += _profile_rows(sync.profile, "the initial sync")
        else:
            lines.append(
                f"Not implemented yet: after a connection to an audience of "
                f"{_fmt(sync.members)} recovered members became active, no record arrived "
                f"within {r.sizes['sync_wait_s']} s. The scenario runs unchanged once the "
                "worker sends an add to every current member of a newly active connection."
            )
        lines.append("")
    if r.state:
        lines += [
            "## (d) State: memory and recovery",
            "",
            f"{_fmt(r.state[0].profiles)} profiles (3 identities, 5 attributes, 2 "
            "memberships, nothing sent yet) written to the table's changelog; a worker with "
            "an empty data dir recovers them. Recovery: process start to /healthz 200. RSS: "
            "VmRSS once ready. The 1,000,000 figures are linear in the profile count over the "
            "empty worker's figures when fewer were stored. Recovered state is checked by "
            "sending 100 profiles a membership remove older than their stored membership: "
            "each must be dropped as stale (the worker's metrics count them).",
            "",
            "| Store | Profiles | RSS | Recovery | Empty worker: RSS, start "
            "| 1,000,000 profiles: RSS, recovery |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.store} | {_fmt(s.profiles)} | {s.rss_bytes / MB:,.0f} MB | "
            f"{s.recovery_s:.1f} s | {s.empty_rss_bytes / MB:,.0f} MB, {s.empty_start_s:.1f} s "
            f"| {s.target_rss_bytes / MB:,.0f} MB, {s.target_recovery_s:.1f} s |"
            for s in r.state
        ]
        lines.append("")
        for s in r.state:
            if s.profile:
                lines += [f"### Where the recovery's time goes ({s.store} store)", ""]
                lines += [*_profile_rows(s.profile, f"the {s.store} worker's start-up"), ""]
    if r.scale_out:
        so = r.scale_out
        lines += [
            "## (e) Scale-out",
            "",
            f"{_fmt(so.profiles)} profiles on {so.partitions} partitions; the workers start "
            "and settle before the input is written. Both workers run on this machine's "
            f"{m['cores']} cores with the broker and the benchmark's own consumer, so the "
            "ratio bounds what a second machine would give from below.",
            "",
            "| Workers | Events | Seconds | Events/s | Outbound/s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t.name} | {_fmt(t.events)} | {t.seconds:.2f} | {_fmt(t.events_per_s)} "
            f"| {_fmt(t.outbound_per_s)} |"
            for t in (so.one, so.two)
        ]
        lines.append("")
    if charts:
        lines += ["## Charts", ""]
        lines += [f"![{name}]({name})" for name in charts]
        lines.append("")
    return "\n".join(lines)


def _charts(r: Results, out: Path) -> list[str]:
    names = []
    if r.steady:
        s = r.steady
        bars = [
            (s.raw.name, s.raw.events_per_s),
            (s.bare_faust.name, s.bare_faust.events_per_s),
            (s.table_send.name, s.table_send.events_per_s),
            ("forwarder (events)", s.forwarder.events_per_s),
            ("forwarder (outbound records)", s.forwarder.outbound_per_s),
        ]
        names.append(
            _bars(out / "throughput.png", "(a) Steady state, 1 partition", bars, "per second")
        )
    if r.latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(r.latency.percentiles_ms, range(1, 100))
        ax.axvline(50, color="red", linestyle="--", label="goal: p99 < 50 ms")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("percentile")
        ax.set_title(f"(b) Latency at {_fmt(r.latency.offered_events_per_s)} events/s")
        ax.legend()
        names.append(_save(fig, out / "latency.png"))
    if r.state:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
        stores = [s.store for s in r.state]
        left.bar(stores, [s.target_rss_bytes / MB for s in r.state])
        left.axhline(1024, color="red", linestyle="--", label="goal (RocksDB): 1 GB")
        left.set_ylabel("MB")
        left.set_title("RSS, 1,000,000 profiles")
        left.legend()
        right.bar(stores, [s.target_recovery_s for s in r.state])
        right.axhline(60, color="red", linestyle="--", label="goal (RocksDB): 60 s")
        right.set_ylabel("seconds")
        right.set_title("Recovery, 1,000,000 profiles")
        right.legend()
        fig.suptitle("(d) State")
        names.append(_save(fig, out / "state.png"))
    if r.scale_out:
        so = r.scale_out
        bars = [("1 worker", so.one.events_per_s), ("2 workers", so.two.events_per_s)]
        names.append(
            _bars(out / "scale_out.png", f"(e) {so.partitions} partitions", bars, "events/s")
        )
    return names


def _bars(path: Path, title: str, bars: list[tuple[str, float]], unit: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(bars) + 1.5))
    ax.barh([name for name, _ in bars], [value for _, value in bars])
    for index, (_, value) in enumerate(bars):
        ax.text(value, index, f" {_fmt(value)}", va="center")
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name
