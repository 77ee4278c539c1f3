#!/usr/bin/env python3
"""Prints the bench table (ratios against targets) and draws docs/bench.png.

usage: report.py OUT_DIR HOST_APPLY_MS HOST_NFT_MS BINARY_BYTES PNG
"""
import os
import sys

out, host_apply, host_nft, binary, png = sys.argv[1:6]


def kv(name):
    d = {}
    path = os.path.join(out, name)
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 2:
                d[parts[0]] = parts[1]
    return d


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


ct = {}
for line in open(os.path.join(out, "conntrack.txt")):
    for key, label in [
        ("ct_list", "conntrack -L > /dev/null"),
        ("proc_grep", "grep -c OFFLOAD /proc/net/nf_conntrack"),
        ("flows_off", "offloadd flows --path offloaded (process)"),
        ("raw", "raw netlink dump, nothing parsed (floor)"),
        ("snapshot", "full snapshot, every entry classified"),
        ("warm", "daemon full resync, tracker already warm"),
        ("filtered", "daemon resync filtered on IPS_OFFLOAD"),
    ]:
        if line.strip().startswith(label):
            ct[key] = num(line.split()[-1])
dm = kv("daemon.txt")
vm = kv("bench-vm.txt")


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


rows = [
    # (what, value text, ratio, target text, ok)
]


def row(what, ratio_value, target, better_low=True, limit=None, detail=""):
    ok = None
    if ratio_value is not None and limit is not None:
        ok = ratio_value <= limit if better_low else ratio_value >= limit
    rows.append((what, ratio_value, target, ok, detail))


row("offloaded-flow query / conntrack -L", ratio(ct.get("flows_off"), ct.get("ct_list")), "<= 0.3", True, 0.3,
    f"{ct.get('flows_off')} vs {ct.get('ct_list')} ms")
row("offloaded-flow query / grep /proc", ratio(ct.get("flows_off"), ct.get("proc_grep")), "(info)", detail=f"{ct.get('flows_off')} vs {ct.get('proc_grep')} ms")
row("classified snapshot / raw floor", ratio(ct.get("snapshot"), ct.get("raw")), "<= 1.3", True, 1.3,
    f"{ct.get('snapshot')} vs {ct.get('raw')} ms")
row("filtered resync / full resync", ratio(ct.get("filtered"), ct.get("warm")), "(info)", detail=f"{ct.get('filtered')} vs {ct.get('warm')} ms")
row("apply: offloadd / nft -f (host, no flowtable)", ratio(num(host_apply), num(host_nft)), "<= 0.5", True, 0.5,
    f"{host_apply} vs {host_nft} ms")
row("apply: offloadd / nft -f (VM, flowtable)", ratio(num(vm.get("apply_offloadd_ms")), num(vm.get("apply_nft_ms"))), "<= 0.5", True, 0.5,
    f"{vm.get('apply_offloadd_ms')} vs {vm.get('apply_nft_ms')} ms")
ev = num(dm.get("events_per_cpu_second"))
row("events per CPU second / 100k", ratio(ev, 100000.0), ">= 1", False, 1.0,
    f"{dm.get('events_per_cpu_second')}/s; lost unrecovered {dm.get('lost_unrecovered')}, overruns {dm.get('overruns')}")
mib = 1024 * 1024
row("binary / 2.5 MiB", ratio(num(binary), 2.5 * mib), "<= 1", True, 1.0, f"{int(binary) / mib:.2f} MiB")
row("idle RSS / 4 MiB", ratio(num(dm.get("rss_idle_kib")), 4096.0), "<= 1", True, 1.0,
    f"{dm.get('rss_idle_kib')} KiB (anonymous {dm.get('anon_idle_kib')} KiB, PSS {dm.get('pss_idle_kib')} KiB)")
row("RSS with 100k flows / 24 MiB", ratio(num(dm.get("rss_tracked_kib")), 24576.0), "<= 1", True, 1.0,
    f"{dm.get('rss_tracked_kib')} KiB (anonymous {dm.get('anon_tracked_kib')} KiB)")
row("forwarding pps: with / without offloadd (VM)", ratio(num(vm.get("pps_with_offloadd")), num(vm.get("pps_without_offloadd"))), "(headline)",
    detail=f"{vm.get('pps_with_offloadd')} vs {vm.get('pps_without_offloadd')} pps, 100-rule forward chain")
row("packets walking the 100 rules: with / without", ratio(num(vm.get("walked_with_offloadd")), num(vm.get("walked_without_offloadd"))), "(info)",
    detail=f"{vm.get('walked_with_offloadd')} vs {vm.get('walked_without_offloadd')} of forwarded packets")

print(f"\n{'measurement':<48} {'ratio':>7}  {'target':<10} {'':4} detail")
for what, r, target, ok, detail in rows:
    rs = f"{r:7.2f}" if r is not None else "    n/a"
    mark = {True: "ok", False: "MISS", None: ""}[ok]
    print(f"{what:<48} {rs}  {target:<10} {mark:4} {detail}")
print(f"CPU per periodic resync at {dm.get('tracked_after_burst')} flows: {dm.get('cpu_ms_per_resync')} ms "
      f"({dm.get('resyncs')} resyncs in 15 s, every 30th full)")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("bench: matplotlib missing, no chart")
    sys.exit(0)
shown = [(w, r, t) for w, r, t, ok, d in rows if r is not None]
fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.2))
names = [w for w, _, _ in shown][::-1]
vals = [r for _, r, _ in shown][::-1]
colors = ["#4c9a2a" if ("with / without" in w or "events" in w) else "#3b6ea8" for w in names]
ax.barh(names, vals, color=colors)
ax.set_xscale("log")
ax.axvline(1.0, color="#888", lw=1)
for i, v in enumerate(vals):
    ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
ax.set_xlabel("ratio (log scale; grey line = 1)")
ax.set_title("offloadd benchmarks (ratios; see docs/benchmarks.md for targets)")
fig.tight_layout()
fig.savefig(png, dpi=110)
print(f"chart: {png}")
