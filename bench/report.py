"""BENCHMARKS.md from the JSON the benchmarks leave in bench/results/.

Every measurement sits next to its baseline from the same run, with the ratio
and, where an issue set one, the goal and PASS/MISS. Medians everywhere; the
spread is [min..max] over repetitions or the p99, as the benchmark measured it.
Missing results are shown as missing, never invented.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHART = RESULTS / "throughput.png"
DOCS_CHART = ROOT / "docs" / "bench-throughput.png"
PY_PACKAGES = ("grpcio", "protobuf", "pyscard", "python-pkcs11", "cryptography", "matplotlib")
DEB_PACKAGES = {"pcsc-lite (pcscd)": "pcscd", "SoftHSM": "softhsm2", "p11-kit": "p11-kit",
                "vpcd": "vsmartcard-vpcd"}  # fmt: skip


@dataclass
class Row:
    """One line of the table."""

    what: str
    hwgate: str
    baseline: str
    ratio: str
    goal: str = ""
    verdict: str = ""


# --- environment ---------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    """CPU, cores, RAM, kernel, Debian, load average: enough to compare runs."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal")), 0)  # fmt: skip
    load = os.getloadavg()
    return {
        "CPU": cpu, "cores": str(os.cpu_count()), "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(), "Debian": _read("/etc/debian_version").strip() or "?",
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    for title, deb in DEB_PACKAGES.items():
        out[title] = _dpkg_version(deb)
    return out


def _dpkg_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "?"
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return proc.stdout.strip() or "not installed"


def load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- rows ----------------------------------------------------------------------------


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['median_ms']:.3f} ms (p99 {summary['p99_ms']:.3f})"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def card_rows(card: Any, fanout_goal_elsewhere: bool = False) -> list[Row]:
    """bench_card.py; the 1000-subscriber goals move to fanout_rows once fanout.json exists."""
    if not card:
        return [Row("CardService", "no result (bench_card did not write card.json)", "", "")]
    apdu, rows = card["apdu"], []
    single, direct = apdu["hwgate_single"], apdu["direct_single"]
    rows.append(Row("APDU round trip (1 SELECT), median", _ms(single), "direct pyscard " +
                    _ms(direct), f"{single['median_ms'] / direct['median_ms']:.1f}x",
                    f"<= 0.6 ms ({single['median_ms'] / 0.6:.2f}x of limit)",
                    _verdict(single["median_ms"] <= 0.6)))  # fmt: skip
    batch, dbatch = apdu["hwgate_16"], apdu["direct_16"]
    ratio = batch["median_ms"] / dbatch["median_ms"]
    rows.append(Row("16-APDU batch, median", _ms(batch), "16 direct transmits " + _ms(dbatch),
                    f"{ratio:.2f}x", "<= 1.5x direct", _verdict(ratio <= 1.5)))  # fmt: skip
    idle = card["idle_rss_mb"]
    for ev in card["events"]:
        n, added = ev["subscribers"], ev["added_ms"]
        shown = (f"+{added['median_ms']:.1f} ms (p99 +{added['p99_ms']:.1f}, "
                 f"n={added['n']})") if added else "no events"  # fmt: skip
        goal = verdict = ""
        if n == 1000 and added and not fanout_goal_elsewhere:
            goal = f"added p99 <= 50 ms ({added['p99_ms'] / 50:.2f}x of limit)"
            verdict = _verdict(added["p99_ms"] <= 50)
        rows.append(Row(f"insert -> event, {n} subscribers", shown,
                        "raw SCardGetStatusChange watcher (= +0)", "", goal, verdict))  # fmt: skip
        grown = ev["rss_mb"] - idle
        goal = verdict = ""
        if n == 1000 and not fanout_goal_elsewhere:
            goal, verdict = f"<= +50 MB ({grown / 50:.2f}x of limit)", _verdict(grown <= 50)
        rows.append(Row(f"daemon RSS, {n} subscribers", f"{ev['rss_mb']:.1f} MB",
                        f"idle {idle:.1f} MB", f"+{grown:.1f} MB", goal, verdict))  # fmt: skip
    return rows


FANOUT_NAMES = {"hwgate": "hwgated", "bare": "bare grpc.aio fan-out (baseline)",
                "hwgate-compare": "hwgated from --compare-tree (A/B)"}  # fmt: skip


def _added(v: Any) -> str:
    a = v["added_ms"]
    if not a:
        return "no events"
    rounds = sorted(p for p in v.get("round_p99_ms", []) if p is not None)
    middle = f"; rounds' p99 median +{rounds[len(rounds) // 2]:.0f}" if len(rounds) > 1 else ""
    return f"+{a['median_ms']:.1f} ms (p99 +{a['p99_ms']:.1f}{middle}, n={a['n']})"


def fanout_rows(fanout: Any) -> list[Row]:
    """bench_fanout.py: insert -> event at 1000 subscribers, hwgated vs a bare fan-out (#21)."""
    if not fanout:
        return []
    n, variants = fanout["subscribers"], fanout["variants"]
    hw, bare = variants.get("hwgate"), variants.get("bare")
    rows = []
    if bare:
        rows.append(Row(f"fan-out: {FANOUT_NAMES['bare']}, {n} subscribers", "", _added(bare),
                        ""))  # fmt: skip
    goals = {g["goal"].split(" <=")[0]: g for g in fanout.get("goals", [])}
    if hw:
        ratio = ""
        if bare and bare["added_ms"] and hw["added_ms"]:
            ratio = f"p99 {hw['added_ms']['p99_ms'] / bare['added_ms']['p99_ms']:.2f}x bare"
        g = goals.get("added p99")
        goal = verdict = ""
        if g:
            goal = f"added p99 <= {g['limit']:.0f} ms ({g['value'] / g['limit']:.2f}x of limit)"
            verdict = _verdict(g["pass"])
        rows.append(Row(f"fan-out: insert -> event, hwgated, {n} subscribers", _added(hw),
                        f"bare {_added(bare)}" if bare else "raw watcher (= +0)", ratio,
                        goal, verdict))  # fmt: skip
        g = goals.get("RSS")
        grown = hw["rss_growth_mb"]
        goal = verdict = ""
        if g:
            goal, verdict = f"<= +{g['limit']:.0f} MB ({grown / g['limit']:.2f}x of limit)", \
                _verdict(g["pass"])  # fmt: skip
        rows.append(Row(f"fan-out: daemon RSS, {n} subscribers", f"{hw['rss_mb']:.1f} MB",
                        f"idle {hw['idle_rss_mb']:.1f} MB", f"+{grown:.1f} MB", goal,
                        verdict))  # fmt: skip
    compare = variants.get("hwgate-compare")
    if compare and hw:
        ratio = ""
        if compare["added_ms"] and hw["added_ms"]:
            ratio = f"p99 {hw['added_ms']['p99_ms'] / compare['added_ms']['p99_ms']:.2f}x"
        rows.append(Row(f"fan-out: hwgated vs {FANOUT_NAMES['hwgate-compare']}", _added(hw),
                        _added(compare), ratio))  # fmt: skip
    for name, v in variants.items():
        what = f"fan-out: CPU per delivered event, {FANOUT_NAMES.get(name, name)}"
        rows.append(Row(what, f"server {v['server_cpu_us_per_event']:.0f} us",
                        f"subscribers {v['client_cpu_us_per_event']:.0f} us", ""))  # fmt: skip
    return rows


# (key, baseline mode, wanted ratio, hwgate modes that count, text). Issue #21's goals
# 4 and 5 first; round one's (the p11-kit ratios of its HSM issue) kept for comparison.
HSM_GOALS = [
    ("ecdsa-p256", "p11kit@8", 0.3, ("unary",),
     "#21.4 ECDSA P-256 unary, 8 clients >= 0.3x p11-kit"),
    ("ecdsa-p256", "direct@2", 0.9, ("batch",),
     "#21.5 ECDSA P-256 batches, 8 clients >= 0.9x direct, a process per core"),
    ("rsa-2048", "direct@2", 0.9, ("batch",),
     "#21.5 RSA-2048 batches, 8 clients >= 0.9x direct, a process per core"),
    ("rsa-2048", "p11kit@8", 1.5, ("unary", "stream", "batch"),
     "round 1: RSA-2048, 8 clients >= 1.5x p11-kit"),
    ("ecdsa-p256", "p11kit@8", 1.5, ("stream", "batch"),
     "round 1: ECDSA P-256 SignStream, 8 clients >= 1.5x p11-kit"),
]  # fmt: skip


def _rate(hsm: Any, key: str, mode: str) -> str:
    runs = hsm.get("runs", {}).get(key, {}).get(mode)
    median = hsm["medians"][key].get(mode)
    if median is None:
        return "missing"
    spread = f" [{min(runs):.0f}..{max(runs):.0f}]" if runs and len(runs) > 1 else ""
    return f"{median:.0f}/s{spread}"


def hsm_rows(hsm: Any) -> list[Row]:
    if not hsm or "medians" not in hsm:
        return [Row("HsmService", "no result (bench_hsm did not write hsm.json)", "", "")]
    med = hsm["medians"]
    rows = []
    for key, modes in med.items():
        for mode in modes:
            if mode.startswith("hwgate"):
                clients = mode.split("@")[1]
                base = f"p11kit@{clients}" if f"p11kit@{clients}" in modes else None
                ratio = f"{modes[mode] / modes[base]:.2f}x p11-kit" if base else ""
                baseline = f"p11-kit {_rate(hsm, key, base)}" if base else ""
                what = f"{key} {mode.replace('@', ', ')} clients"
                rows.append(Row(what, _rate(hsm, key, mode), baseline, ratio))
            else:
                rows.append(Row(f"{key} {mode.replace('@', ', ')} clients (baseline)",
                                "", _rate(hsm, key, mode), ""))  # fmt: skip
    for key, base, wanted, counted, text in HSM_GOALS:
        if key not in med or base not in med[key]:
            continue
        # The best of the modes that count for the goal; the mode is named in the row.
        candidates = {m.split("@")[0].removeprefix("hwgate-"): v for m, v in med[key].items()
                      if m.startswith("hwgate-") and m.endswith("@8")}  # fmt: skip
        candidates = {m: v for m, v in candidates.items() if m in counted}
        if not candidates:
            continue
        which = max(candidates, key=lambda m: candidates[m])
        mine = candidates[which]
        ratio = mine / med[key][base]
        rows.append(Row(f"goal: {text}", f"{mine:.0f}/s ({which})",
                        f"{base.replace('@', ' x')} {med[key][base]:.0f}/s", f"{ratio:.2f}x",
                        f">= {wanted}x", _verdict(ratio >= wanted)))  # fmt: skip
    for key, costs in hsm.get("cpu_per_signature", {}).items():
        for mode, c in costs.items():  # what bounds the rates on 2 cores
            server = "" if mode.startswith("direct") else f"server {c['server_us']:.0f} us"
            rows.append(Row(f"{key} {mode.replace('@', ', ')} clients: CPU per signature",
                            server, f"clients {c['clients_us']:.0f} us", ""))  # fmt: skip
    return rows


def daemon_rows(daemon: Any) -> list[Row]:
    if not daemon:
        return [Row("daemon", "no result (bench_daemon did not write daemon.json)", "", "")]
    rows = []
    names = {"health_s": "start-up: exec -> first health answer",
             "ready_s": "start-up: exec -> READY=1 (NOTIFY_SOCKET)",
             "all_serving_s": "start-up: exec -> every service SERVING"}  # fmt: skip
    for key, what in names.items():
        if key in daemon:
            r = daemon[key]
            rows.append(Row(what, f"{r['median'] * 1000:.0f} ms [{r['min'] * 1000:.0f}.."
                            f"{r['max'] * 1000:.0f}] n={r['n']}", "", ""))  # fmt: skip
    mem = daemon["memory"]
    rows.append(Row("daemon RSS under load (8 clients sign+transmit), peak",
                    f"{mem['load_peak_mb']:.1f} MB", f"idle {mem['idle_mb']:.1f} MB",
                    f"+{mem['load_peak_mb'] - mem['idle_mb']:.1f} MB"))  # fmt: skip
    rows.append(
        Row(
            "daemon + HSM workers RSS under load, peak",
            f"{mem['load_peak_with_workers_mb']:.1f} MB",
            f"idle {mem['idle_with_workers_mb']:.1f} MB",
            f"+{mem['load_peak_with_workers_mb'] - mem['idle_with_workers_mb']:.1f} MB",
        )
    )
    return rows


UNARY_NAMES = {"bare_health": "bare grpc.aio Health/Check (baseline)",
               "direct_1": "direct pyscard SELECT (baseline)",
               "direct_16": "16 direct pyscard SELECTs (baseline)"}  # fmt: skip


def unary_rows(unary: Any) -> list[Row]:
    """bench_unary.py: hwgate's per-call cost vs a bare grpc.aio server, same run (#21)."""
    if not unary:
        return []
    series = unary["series"]
    rows = [Row(f"unary: {what}", "", _ms(series[name]), "")
            for name, what in UNARY_NAMES.items() if name in series]  # fmt: skip
    bare = series["bare_health"]["median_ms"]
    names = {
        "hwgate_health": "Health/Check",
        "hwgate_sign": "Sign ECDSA P-256 (client library)",
        "hwgate_transmit_1": "Transmit 1 SELECT",
        "hwgate_transmit_16": "Transmit 16 SELECTs",
    }
    goals = {g["goal"].split(" <=")[0]: g for g in unary["goals"]}
    goal_of = {
        "hwgate_health": "Health/Check",
        "hwgate_sign": "Sign ECDSA P-256 unary",
        "hwgate_transmit_1": "Transmit 1 APDU",
        "hwgate_transmit_16": "Transmit 16 APDUs",
    }
    for name, what in names.items():
        if name not in series:
            continue
        s, g = series[name], goals.get(goal_of[name])
        goal = verdict = ""
        baseline = f"bare {bare:.3f} ms"
        if g:
            limit = g["limit_ms"]
            goal = (f"{g['goal'].split(' <= ', 1)[1]} = {limit:.3f} ms "
                    f"({s['median_ms'] / limit:.2f}x of limit)")  # fmt: skip
            verdict = _verdict(g["pass"])
            baseline = g["baseline"]
        rows.append(Row(f"unary: hwgated {what}, median", _ms(s), baseline,
                        f"{s['median_ms'] / bare:.2f}x bare, +{s['median_ms'] - bare:.3f} ms",
                        goal, verdict))  # fmt: skip
    for name, what in (("compare_health", "Health/Check"), ("compare_sign", "Sign ECDSA P-256")):
        if name in series:  # --compare-tree: the same calls to hwgated from another checkout
            mine, old = series[name.replace("compare", "hwgate")], series[name]
            rows.append(Row(f"unary: {what}, hwgated vs hwgated from --compare-tree (A/B)",
                            _ms(mine), _ms(old), f"{mine['median_ms'] / old['median_ms']:.2f}x",
                            "", ""))  # fmt: skip
    cpu = [(n, s) for n, s in series.items() if s.get("client_cpu_us") is not None]
    for name, s in cpu:
        server = s.get("server_cpu_us")
        rows.append(Row(f"unary: CPU per call, {name}",
                        "" if server is None else f"server {server:.0f} us",
                        f"client {s['client_cpu_us']:.0f} us", "", "", ""))  # fmt: skip
    for name, b in unary.get("batching", {}).items():
        rows.append(Row(f"batching: {name}", b["hwgate"], b["baseline"], b["ratio"],
                        b.get("goal", ""), b.get("verdict", "")))  # fmt: skip
    return rows


def testbed_rows(testbed: Any) -> list[Row]:
    if not testbed:
        return []
    return [Row(f"test bed: {r['name']}", "", f"{r['median_ms']:.3f} ms (p99 {r['p99_ms']:.3f})",
                "", r["note"]) for r in testbed["rows"]]  # fmt: skip


def piv_rows(piv: Any) -> list[Row]:
    """bench_piv.py's hwgate vs direct summaries (VerifyPin + Sign 9C per round)."""
    if not piv:
        return []
    if isinstance(piv.get("hwgate"), dict) and isinstance(piv.get("direct"), dict):
        mine, base = piv["hwgate"], piv["direct"]
        ratio = f"{mine['median_ms'] / base['median_ms']:.1f}x"
        what = "PIV VerifyPin + Sign(9C, P-256), one round"
        return [Row(what, _ms(mine), "direct pyscard " + _ms(base), ratio)]
    return flat_rows("piv", piv)


def result_files() -> list[str]:
    """When each result was written: runs that failed leave an older file (or none)."""
    lines = []
    for path in sorted(RESULTS.glob("*.json")):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(path.stat().st_mtime))
        lines.append(f"- `bench/results/{path.name}`: {stamp}")
    return lines


def flat_rows(prefix: str, data: Any, path: str = "") -> list[Row]:
    """Numbers of a result whose layout this report does not know (e.g. piv.json)."""
    if isinstance(data, dict):
        return [r for k, v in data.items() for r in flat_rows(prefix, v, f"{path}.{k}".strip("."))]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [Row(f"{prefix}: {path}", f"{data:.4g}", "", "")]
    return []


# --- chart and document ----------------------------------------------------------------


def chart(hsm: Any) -> bool:
    """HSM signatures/s vs clients, one panel per key; False when there is nothing to plot."""
    if not hsm or "medians" not in hsm:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(hsm["medians"])
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        by_backend: dict[str, list[tuple[int, float, float, float]]] = {}
        for mode, median in hsm["medians"][key].items():
            backend, clients = mode.split("@")
            runs = hsm.get("runs", {}).get(key, {}).get(mode) or [median]
            by_backend.setdefault(backend, []).append(
                (int(clients), median, median - min(runs), max(runs) - median)
            )
        for backend, points in sorted(by_backend.items()):
            points.sort()
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            err = [[p[2] for p in points], [p[3] for p in points]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=backend)
        ax.set_title(f"{key}: signatures/s (median, min..max)")
        ax.set_xlabel("concurrent clients (processes)")
        ax.set_ylabel("signatures/s")
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    CHART.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CHART, DOCS_CHART)
    return True


def markdown_table(rows: list[Row]) -> str:
    lines = ["| measurement | hwgate | baseline (same run) | ratio | goal | result |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r.what} | {r.hwgate} | {r.baseline} | {r.ratio} | {r.goal} | {r.verdict} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def text_table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("what", "hwgate", "baseline")]
    out = []
    for r in rows:
        out.append(f"{r.what:{widths[0]}}  {r.hwgate:{widths[1]}}  {r.baseline:{widths[2]}}  "
                   f"{r.ratio:>14}  {r.goal} {r.verdict}".rstrip())  # fmt: skip
    return "\n".join(out)


def _soak_section() -> list[str]:
    soak = load("soak")
    if not soak:
        return []
    rss = soak["rss_mb"]
    lines = ["## Soak (`make soak`, last run's bench/results/soak.json)", "",
             f"{soak['clients']} clients in {soak['processes']} processes for "
             f"{soak['seconds']:.0f} s, {soak['card_cycles']} card pull/insert cycles; "
             f"completed: {soak['ok_by_kind']}; expected card errors: "
             f"{soak['expected_errors']}; RSS {rss['start']:.1f} -> {rss['end']:.1f} MB "
             f"(second-half fit {rss.get('fitted_growth_mb_second_half', 0.0):+.2f} MB); threads "
             f"{soak['threads']['baseline']} -> {soak['threads']['end']}.", ""]  # fmt: skip
    lines += [f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in soak["checks"].items()]
    return [*lines, ""]


def _drill_section() -> list[str]:
    drill = load("drill")
    if not drill:
        return []
    lines = ["## Fault drill recoveries (tests/drill, bench/results/drill.json)", "",
             "| fault | measured |", "|---|---|"]  # fmt: skip
    for fault, values in drill.items():
        shown = ", ".join(f"{k} {v * 1000:.0f} ms" if isinstance(v, float) else f"{k} {v}"
                          for k, v in values.items())  # fmt: skip
        lines.append(f"| {fault} | {shown} |")
    return [*lines, ""]


def build(machine_info: dict[str, str], runs: list[dict[str, object]]) -> tuple[str, str]:
    """(BENCHMARKS.md text, the plain table to print)."""
    fanout = load("fanout")
    rows = (unary_rows(load("unary")) + fanout_rows(fanout)
            + card_rows(load("card"), fanout_goal_elsewhere=bool(fanout)) + hsm_rows(load("hsm"))
            + daemon_rows(load("daemon"))
            + piv_rows(load("piv")) + testbed_rows(load("testbed")))  # fmt: skip
    charted = chart(load("hsm"))
    goals = [r for r in rows if r.verdict]
    passed = sum(r.verdict == "PASS" for r in goals)
    doc = ["# hwgate benchmarks", "",
           "Generated by `make bench` (`python -m bench`); do not edit by hand. Every hwgate",
           "figure is measured in the same run as its baseline, on the machine below, which is",
           "shared and noisy: compare within this file, not across runs.", "",
           "## Machine", ""]  # fmt: skip
    doc += [f"- {k}: {v}" for k, v in machine_info.items()]
    doc += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions().items()]
    doc += ["", f"## Results ({passed} of {len(goals)} goals met)", "", markdown_table(rows), ""]
    if charted:
        doc += ["## HSM throughput vs clients", "",
                f"![HSM throughput]({DOCS_CHART.relative_to(ROOT)})", ""]  # fmt: skip
    pool_log = RESULTS / "hsm_pool.log"
    if pool_log.exists():
        doc += ["## HsmPool alone (bench_hsm_pool.py)", "", "```",
                pool_log.read_text().strip(), "```", ""]  # fmt: skip
    doc += _soak_section() + _drill_section()
    if runs:
        doc += ["## Benchmark runs", "", "| benchmark | status | seconds |", "|---|---|---|"]
        doc += [f"| {r['name']} | {r['status']} | {float(str(r['seconds'])):.0f} |" for r in runs]
        doc.append("")
    doc += ["## Result files", "", *result_files(), ""]
    doc += ["## Method", "",
            "- APDU: SELECT PIV through `Transmit` vs pyscard on the other reader, 1000 round "
            "trips each (`bench_card.py`).",
            "- Events: the added latency is the subscriber's receive time minus a raw "
            "`SCardGetStatusChange` watcher's in the same process, per insertion.",
            "- Fan-out (#21): hwgated and a bare grpc.aio fan-out server (`bench/bare_fanout.py`:"
            " one pre-serialized event per insertion in every stream's queue, no identification)"
            " one at a time on the same reader, interleaved in rounds; the subscribers live in 4"
            " client processes; added latency as for Events; CPU from /proc and the subscriber"
            " processes' own clocks, per delivered event (`bench_fanout.py`).",
            "- HSM: every client is its own process; clients start together on a barrier and "
            "count completions for the same window; medians of the repetitions, [min..max] "
            "spread; CPU per signature: each client's own CPU for its measured window (all "
            "threads), the server's (hwgated with its HSM workers, or p11-kit's server with its "
            "per-connection children) from /proc around the run (`bench_hsm.py`).",
            "- Unary (#21): serial calls from one client thread to a bare grpc.aio server "
            "(health servicer only, Unix socket, own process) and to hwgated, by the same client "
            "code, interleaved in rounds; medians of every call; CPU per call of the server "
            "(hwgated with its HSM workers) and of the client, from /proc per series "
            "(`bench_unary.py`; `--compare-tree DIR` adds hwgated from another checkout).",
            "- Start-up: exec to first health answer / READY=1 on a datagram NOTIFY_SOCKET; "
            "RSS from /proc (`bench_daemon.py`).", ""]  # fmt: skip
    return "\n".join(doc), text_table(rows) + f"\n\ngoals met: {passed} of {len(goals)}"
