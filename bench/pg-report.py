#!/usr/bin/env python3
"""Print bench/pg.sh's results as tables (Markdown), with the targets.

usage: pg-report.py RESULTS.jsonl [--title TEXT]

Every figure is the median over the rounds, with the range of the rounds
in brackets; a ratio is the median of the per-round ratios (each round's
paths ran back to back), so a slow minute on a shared machine moves both
sides of it.
"""
import json
import statistics
import sys

PATHS = {"A": "A direct", "B": "B pgbouncer", "C": "C jitproxy", "D": "D jitproxy, TLS from the client",
         "E": "E bare Go relay (floor)"}
TARGET_RATIO = 0.75
TARGET_LATENCY_US = 30
TARGET_IDLE_BYTES = 32 * 1024


def med(xs):
    return statistics.median(xs) if xs else None


def rng(xs, fmt):
    if len(xs) < 2:
        return ""
    return " [" + fmt % min(xs) + "–" + fmt % max(xs) + "]"


def main():
    args = sys.argv[1:]
    title = None
    if "--title" in args:
        i = args.index("--title")
        title = args[i + 1]
        del args[i:i + 2]
    recs = [json.loads(l) for l in open(args[0]) if l.strip()]
    meta = next((r for r in recs if r["kind"] == "meta"), {})
    runs = [r for r in recs if r["kind"] == "run"]
    idles = [r for r in recs if r["kind"] == "idle"]
    modes = []
    for r in runs:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    many = sorted({r["clients"] for r in runs if r["clients"] > 1})
    c = many[0] if many else None
    rounds = sorted({r["round"] for r in runs})

    def get(path, mode, clients, key="tps"):
        return {r["round"]: r[key] for r in runs if r["path"] == path and r["mode"] == mode and r["clients"] == clients}

    out = []
    p = out.append
    if title:
        p("### " + title)
        p("")
    if meta:
        p("%s; %s (nproc %s, %s GiB), kernel %s; %s; %s; %s. `%s`, %d round(s)." % (
            meta.get("date", ""), meta.get("cpu"), meta.get("nproc"), meta.get("mem_gib"), meta.get("kernel"),
            meta.get("go"), meta.get("postgres"), meta.get("pgbouncer", "").split("\n")[0], meta.get("command"), len(rounds)))
        p("")
    verdicts = []

    if c:
        secs = next((r["seconds"] for r in runs if r["clients"] == c), "?")
        p("**Throughput**, `pgbench -n -S -c %d -j %s -T %s` (TPS, median [range] of the rounds):" % (
            c, next((r["threads"] for r in runs if r["clients"] == c), "?"), secs))
        p("")
        p("| path | " + " | ".join("%s" % m for m in modes) + " |")
        p("|---|" + "---:|" * len(modes))
        for path in PATHS:
            cells = []
            for m in modes:
                v = list(get(path, m, c).values())
                cells.append("%.0f%s" % (med(v), rng(v, "%.0f")) if v else "–")
            if any(x != "–" for x in cells):
                p("| %s | %s |" % (PATHS[path], " | ".join(cells)))
        p("")
        p("| ratio | " + " | ".join(modes) + " |")
        p("|---|" + "---:|" * len(modes))
        for num, den in (("C", "A"), ("B", "A"), ("C", "B"), ("D", "A"), ("D", "C"), ("E", "A"), ("C", "E")):
            cells = []
            for m in modes:
                a, b = get(num, m, c), get(den, m, c)
                rs = [a[r] / b[r] for r in a if r in b and b[r]]
                cells.append("%.3f%s" % (med(rs), rng(rs, "%.2f")) if rs else "–")
                if (num, den) == ("C", "A") and rs:
                    ok = med(rs) >= TARGET_RATIO
                    verdicts.append("%s jitproxy ≥ %.2f× direct TPS, %s: %.3f×" % ("MET   " if ok else "MISSED", TARGET_RATIO, m, med(rs)))
            if any(x != "–" for x in cells):
                p("| %s/%s | %s |" % (num, den, " | ".join(cells)))
        p("")

    if 1 in {r["clients"] for r in runs}:
        secs = next((r["seconds"] for r in runs if r["clients"] == 1), "?")
        p("**Latency**, `pgbench -n -S -c 1 -j 1 -T %s` (average latency in µs, median [range]; TPS):" % secs)
        p("")
        p("| path | " + " | ".join(modes) + " |")
        p("|---|" + "---:|" * len(modes))
        for path in "ABCE":
            if not any(r["path"] == path and r["clients"] == 1 for r in runs):
                continue
            cells = []
            for m in modes:
                v = [x * 1000 for x in get(path, m, 1, "latency_ms").values() if x is not None]
                t = list(get(path, m, 1).values())
                cells.append("%.1f µs%s (%.0f TPS)" % (med(v), rng(v, "%.0f"), med(t)) if v else "–")
            p("| %s | %s |" % (PATHS[path], " | ".join(cells)))
        for num in "CBE":
            if not any(r["path"] == num and r["clients"] == 1 for r in runs):
                continue
            cells = []
            for m in modes:
                a, b = get(num, m, 1, "latency_ms"), get("A", m, 1, "latency_ms")
                ds = [(a[r] - b[r]) * 1000 for r in a if r in b and a[r] is not None and b[r] is not None]
                cells.append("%+.1f µs%s" % (med(ds), rng(ds, "%+.0f")) if ds else "–")
                if num == "C" and ds:
                    ok = med(ds) <= TARGET_LATENCY_US
                    verdicts.append("%s jitproxy 1-client latency ≤ +%d µs over direct, %s: %+.1f µs" % ("MET   " if ok else "MISSED", TARGET_LATENCY_US, m, med(ds)))
            p("| %s − A | %s |" % (num, " | ".join(cells)))
        p("")

    if c:
        p("**CPU per transaction** at -c %d (µs of CPU time per transaction, median of the rounds; the proxy is "
          "pgbouncer, jitproxy or pg-relay; machine is all CPU time on the machine, whoever used it):" % c)
        p("")
        proxy = {"B": "pgbouncer", "C": "jitproxy", "D": "jitproxy", "E": "pg-relay"}
        p("| path | mode | pgbench | postgres | the proxy | machine |")
        p("|---|---|---:|---:|---:|---:|")
        for path in PATHS:
            for m in modes:
                rs = [r for r in runs if r["path"] == path and r["mode"] == m and r["clients"] == c]
                if not rs:
                    continue
                cells = []
                for k in ("pgbench", "postgres", proxy.get(path), "machine"):
                    v = [r["cpu_us_per_tx"][k] for r in rs if k and r["cpu_us_per_tx"].get(k) is not None]
                    cells.append("%.1f" % med(v) if v else "–")
                p("| %s | %s | %s |" % (PATHS[path], m, " | ".join(cells)))
        p("")
        busy = [r.get("quiet_before_pct") for r in runs if r.get("quiet_before_pct") is not None]
        if busy:
            waited = sum(r.get("quiet_waited_s", 0) for r in runs)
            p("The machine was busy with other work just before each run: median %.0f%%, max %.0f%% "
              "(the script waited %.0f s in all for quieter moments)." % (med(busy), max(busy), waited))
            p("")

    scs = [r for r in recs if r["kind"] == "syscalls"]
    if scs:
        p("**System calls per transaction** of the proxy (`strace -c -f -p` during `pgbench -S -t 1500`, logins included; "
          "strace slows every path, so only the counts mean anything):")
        p("")
        p("| path | mode | reads | writes | waits (epoll) | futex | other | total |")
        p("|---|---|---:|---:|---:|---:|---:|---:|")
        groups = {"reads": ("read", "recvfrom", "recvmsg"), "writes": ("write", "sendto", "sendmsg", "writev"),
                  "waits": ("epoll_wait", "epoll_pwait", "epoll_pwait2"), "futex": ("futex",)}
        for r in scs:
            pt = r["per_tx"]
            cells = [sum(pt.get(k, 0) for k in ks) for ks in groups.values()]
            cells.append(r["total_per_tx"] - sum(cells))
            p("| %s | %s | %s | %.2f |" % (PATHS.get(r["path"], r["path"]), r["mode"], " | ".join("%.2f" % x for x in cells), r["total_per_tx"]))
        p("")

    for idle in idles:
        per = idle["bytes_per_conn"]
        label = idle.get("label", "plaintext")
        p("**Idle connections** through jitproxy (%s from the client): %d of %d opened; jitproxy VmRSS %d KiB → %d KiB: "
          "**%.1f KiB per idle connection** (%d fds, %d threads; the machine's MemAvailable fell by %d MiB, mostly PostgreSQL backends)." % (
              "TLS" if label == "tls" else "no TLS", idle["open"], idle["wanted"], idle["rss_before_kib"], idle["rss_after_kib"],
              per / 1024, idle["fds"], idle["threads"], idle["machine_mem_used_mib"]))
        p("")
        if label != "tls":
            ok = per <= TARGET_IDLE_BYTES and idle["open"] >= 5000
            note = "" if idle["open"] >= 5000 else " (only %d connections: the target is at 5,000)" % idle["open"]
            verdicts.append("%s ≤ 32 KiB per idle connection at 5,000: %.1f KiB%s" % ("MET   " if ok else "MISSED", per / 1024, note))

    if verdicts:
        p("**Targets**:")
        p("")
        for v in verdicts:
            p("- " + v)
    print("\n".join(out))


if __name__ == "__main__":
    main()
