#!/usr/bin/env python3
"""Print the final table of bench/ssh.sh from its results.jsonl.

usage: report.py RESULTS.jsonl [MORE.jsonl ...]

With several files (runs of the same setup) the samples are pooled: the
medians and ratios are over every round of every run, and each run's cut
measurements are listed.

Throughput per path is the median over the rounds (min and max shown);
connection time is the median of every `ssh ... true` sample. Ratios are
taken from those medians, so they compare figures of the same run.
"""
import json
import statistics
import sys

PATHS = [("A", "direct to sshd"), ("B", "OpenSSH -J bastion"),
         ("C", "jitproxy single hop"), ("D", "jitproxy -J"),
         ("E", "single hop, relay")]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def main():
    rows = []
    for i, path in enumerate(sys.argv[1:]):
        for r in load(path):
            r["run"] = i + 1
            rows.append(r)
    runs = len(sys.argv) - 1
    meta = next((r for r in rows if r["kind"] == "meta"), {})
    fails = {r["path"]: r["error"] for r in rows if r["kind"] == "fail"}
    thr = {(p, d): [r["mibs"] for r in rows if r["kind"] == "xfer" and r["path"] == p and r["dir"] == d and r.get("ok")]
           for p, _ in PATHS for d in ("up", "down", "text")}
    xfail = {(r["path"], r["dir"]): r.get("error", "") for r in rows if r["kind"] == "xfer" and not r.get("ok")}
    conn = {p: [s for r in rows if r["kind"] == "conn" and r["path"] == p for s in r["ms"]] for p, _ in PATHS}
    sftp = {p: [s for r in rows if r["kind"] == "sftp" and r["path"] == p for s in r["ms"]] for p, _ in PATHS}
    present = [(p, n) for p, n in PATHS if thr[(p, "up")] or thr[(p, "down")] or conn[p] or p in fails or p in "ABCD"]
    has_text = any(thr[(p, "text")] for p, _ in PATHS)
    dirs = ("up", "down", "text") if has_text else ("up", "down")
    out = []
    w = out.append
    if meta:
        w("jitproxy SSH benchmark  (%s)" % meta.get("date", ""))
        w("machine: %s cores, %s; kernel %s; %s; %s" % (meta.get("nproc"), meta.get("cpu"), meta.get("kernel"),
                                                      meta.get("go"), meta.get("openssh")))
        w("command: %s" % meta.get("command", ""))
        if runs > 1:
            w("pooled: %d runs (%s)" % (runs, "; ".join(r.get("date", "") + " " + r.get("command", "") for r in rows if r["kind"] == "meta")))
        w("cipher %s on every hop (MAC implicit), key exchange %s; %s MiB per transfer (%s MiB for NUL bytes down); %s rounds, paths interleaved; %s connection samples per path per round" % (
            meta.get("cipher"), meta.get("kex", "?"), meta.get("size_mib"), meta.get("down_mib", meta.get("size_mib")), meta.get("rounds"), meta.get("conn_samples")))
        w("C is the single hop as jitproxy ssh-config prints it (fd passing); E the same with ssh-config --relay")
        if meta.get("isolate"):
            w("isolated: jitproxy pinned to CPU 0, the clients and sshds to the other CPUs")
        if meta.get("nice"):
            w("jitproxy ran at nice %s (everything else at the default)" % meta["nice"])
        casts = [r for r in rows if r["kind"] == "castsize" and r["run"] == 1]
        for r in casts:
            w("recording of one %s MiB %s transfer on path %s: %.0f MiB" % (r.get("size_mib", meta.get("size_mib")), {"down": "NUL-byte", "text": "text"}.get(r.get("dir", "down"), ""), r["path"], r["bytes"] / 2**20))
        w("")
    m, best = {}, {}
    if any(thr.values()) or any(conn.values()) or fails:
        w("Throughput (MiB/s, median of rounds [min-max]) and connection time (ms, median of all samples [p90])")
        busy = [r["busy_before"] for r in rows if r["kind"] in ("xfer", "conn") and "busy_before" in r]
        if busy:
            w("(other work on the machine just before each measurement: median %d%%, max %d%% busy)" % (med(busy), max(busy)))
        hdr = ["client->server", "server->client"] + (["s->c, text"] if has_text else []) + ["ssh ... true", "sftp -b /dev/null"]
        w(("%-26s" + " %-22s" * len(hdr)) % tuple(["path"] + hdr))
        for p, name in present:
            if p in fails:
                w("%-26s fails: %s" % (p + " " + name, fails[p]))
                continue
            cells = []
            for d in dirs:
                xs = thr[(p, d)]
                m[(p, d)] = med(xs)
                best[(p, d)] = max(xs) if xs else None
                if xs:
                    cells.append("%6.1f [%.0f-%.0f]" % (med(xs), min(xs), max(xs)))
                elif (p, d) in xfail:
                    cells.append("fails")
                else:
                    cells.append("-")
            cs = sorted(conn[p])
            m[(p, "conn")] = med(cs)
            best[(p, "conn")] = min(cs) if cs else None
            p90 = cs[min(len(cs) - 1, int(round(0.9 * (len(cs) - 1))))] if cs else None
            cells.append("%6.1f [%s] n=%d" % (med(cs), fmt(p90, "%.0f"), len(cs)) if cs else "-")
            m[(p, "sftp")] = med(sftp[p])
            cells.append("%6.1f n=%d" % (med(sftp[p]), len(sftp[p])) if sftp[p] else "-")
            w(("%-26s" + " %-22s" * len(cells)) % tuple([p + " " + name] + cells))
        # CPU seconds per GiB, per transfer (each row has its own size;
        # older runs' rows take the run's size).
        cpu = {(p, d): [r["jp_cpu_s"] / (r.get("size_mib", meta.get("size_mib", 0)) / 1024)
                        for r in rows if r["kind"] == "xfer" and r["path"] == p and r["dir"] == d and r.get("ok") and "jp_cpu_s" in r
                        and r.get("size_mib", meta.get("size_mib"))]
               for p, _ in present for d in dirs}
        if any(cpu[(p, d)] for p, _ in present if p not in "AB" for d in dirs):
            w("jitproxy server CPU seconds per GiB moved (median; recording sealed included): " + "; ".join(
                "%s %s" % (p, " ".join("%s %.2f" % (d, med(cpu[(p, d)])) for d in dirs if cpu[(p, d)]))
                for p, _ in present if p not in "AB"))
        w("")
        w("%-20s upload  download  connect  (sftp)  (text)  %-30s | best rounds: upload download connect" % ("Ratios (pooled)" if runs > 1 else "Ratios (same run)", "targets"))

        def ratio(a, b, k, src=m):
            x, y = src.get((a, k)), src.get((b, k))
            return None if x is None or y is None or y == 0 else x / y
        targets = {
            ("C", "A"): "thr >= 0.60x, connect <= 1.10x",
            ("C", "B"): "thr >= 1.25x",
            ("D", "B"): "thr >= 1.00x, connect <= 1.00x",
        }
        if any(p == "E" for p, _ in present):
            targets[("C", "E")] = "(fd passing vs the relay)"
        verdicts = []
        for (a, b), t in targets.items():
            ru, rd, rc = ratio(a, b, "up"), ratio(a, b, "down"), ratio(a, b, "conn")
            w("%s/%s                  %6s  %8s  %7s  %6s  %6s  %-30s | %6s  %8s  %7s" % (
                a, b, fmt(ru, "%.2f"), fmt(rd, "%.2f"), fmt(rc, "%.2f"), fmt(ratio(a, b, "sftp"), "%.2f"), fmt(ratio(a, b, "text"), "%.2f"), t,
                fmt(ratio(a, b, "up", best), "%.2f"), fmt(ratio(a, b, "down", best), "%.2f"), fmt(ratio(a, b, "conn", best), "%.2f")))
            if (a, b) == ("C", "A"):
                verdicts.append(("single hop >= 0.6x direct throughput (up/down)", ok(ru, 0.6) and ok(rd, 0.6), "%s / %s" % (fmt(ru, "%.2f"), fmt(rd, "%.2f"))))
                verdicts.append(("single hop connect <= 1.1x direct", None if rc is None else rc <= 1.1, fmt(rc, "%.2f")))
            if (a, b) == ("C", "B"):
                verdicts.append(("single hop >= 1.25x OpenSSH -J throughput (up/down)", ok(ru, 1.25) and ok(rd, 1.25), "%s / %s" % (fmt(ru, "%.2f"), fmt(rd, "%.2f"))))
            if (a, b) == ("D", "B"):
                verdicts.append(("jitproxy -J >= OpenSSH -J throughput (up/down)", ok(ru, 1.0) and ok(rd, 1.0), "%s / %s" % (fmt(ru, "%.2f"), fmt(rd, "%.2f"))))
                verdicts.append(("jitproxy -J connect <= OpenSSH -J", None if rc is None else rc <= 1.0, fmt(rc, "%.2f")))
        w("")
    else:
        verdicts = []

    cuts = [r for r in rows if r["kind"] == "cut"]
    if cuts:
        w("Cut latency (ms). exit = every ssh process's exit after the origin (revoke commit, or expiry instant);")
        w("proxy = jitproxy's own figure (origin to the session's cut returning): exact from its log, and")
        w("histogram_quantile of jitproxy_session_cut_latency_seconds (GET /metrics, this run's delta)")
        w("%-16s %6s  %-24s %-24s %-18s %s" % ("case", "N", "exit p50/p99/max", "proxy p50/p99/max", "hist p50/p99", "notes"))
        for r in cuts:
            if "error" in r:
                w("%-16s %6s  fails: %s" % (r["label"] + run_tag(r, runs), r["n"], r["error"]))
                continue
            notes = []
            if r.get("survivors"):
                notes.append("%d still running after the timeout" % r["survivors"])
            notes.append("%d/%d told why" % (r.get("told_why", 0), r["n"]))
            if r.get("open_failures"):
                notes.append("%d opens retried" % r["open_failures"])
            if "revoke_cli_ms" in r:
                notes.append("revoke CLI %.0f ms, commit at +%.0f ms" % (r["revoke_cli_ms"], r["commit_after_cli_start_ms"]))
            notes.append("opened in %.1fs" % r.get("open_seconds", 0))
            if "client_procs_per_session" in r:
                notes.append("client: %.2f processes, %.0f KiB private per session" % (r["client_procs_per_session"], r["client_private_kib_per_session"]))
            w("%-16s %6d  %-24s %-24s %-18s %s" % (
                r["label"] + run_tag(r, runs), r["n"],
                "%s / %s / %s" % (fmt(r.get("exit_p50_ms")), fmt(r.get("exit_p99_ms")), fmt(r.get("exit_max_ms"))),
                "%s / %s / %s" % (fmt(r.get("proxy_p50_ms")), fmt(r.get("proxy_p99_ms")), fmt(r.get("proxy_max_ms"))),
                "%s / %s" % (fmt(r.get("hist_p50_ms")), fmt(r.get("hist_p99_ms"))),
                "; ".join(notes)))
        w("")
        big = max((r for r in cuts if r["mode"] == "revoke" and "error" not in r), key=lambda r: r["n"], default=None)
        if big:
            verdicts.append(("cut p99 <= 10 ms at %d sessions (proxy's own figure)" % big["n"],
                             None if big.get("proxy_p99_ms") is None else big["proxy_p99_ms"] <= 10,
                             "%s ms (every ssh exited: p99 %s ms)" % (fmt(big.get("proxy_p99_ms")), fmt(big.get("exit_p99_ms")))))
        exp = next((r for r in cuts if r["mode"] == "expiry" and "error" not in r), None)
        if exp:
            verdicts.append(("one session cut <= 5 ms after the expiry instant (proxy's figure)",
                             None if exp.get("proxy_max_ms") is None else exp["proxy_max_ms"] <= 5,
                             "%s ms" % fmt(exp.get("proxy_max_ms"), "%.2f")))
            verdicts.append(("... and its ssh process gone <= 5 ms after it",
                             None if exp.get("exit_max_ms") is None else exp["exit_max_ms"] <= 5,
                             "%s ms" % fmt(exp.get("exit_max_ms"), "%.2f")))
        mem = next((r for r in cuts if "rss_per_session_kib" in r), None)
        if mem:
            w("Memory per idle session at %d sessions: jitproxy VmRSS %d -> %d KiB = %.1f KiB per session" % (
                mem["n"], mem["rss_before_kib"], mem["rss_after_kib"], mem["rss_per_session_kib"]))
            w("  Go heap+stack in use: %.1f KiB per session; %.1f goroutines per session (sshd, ssh and ssh-proxy not counted)" % (
                mem["go_heap_stack_per_session_kib"], mem["goroutines_per_session"]))
            w("")
            verdicts.append(("memory <= 128 KiB per idle session (at %d)" % mem["n"], mem["rss_per_session_kib"] <= 128,
                             "%.1f KiB" % mem["rss_per_session_kib"]))
    if verdicts:
        w("Targets")
        for name, good, val in verdicts:
            w("  %-8s %-68s %s" % ({True: "MET", False: "MISSED", None: "n/a"}[good], name, val))
    print("\n".join(out))


def run_tag(r, runs):
    return " (run %d)" % r["run"] if runs > 1 else ""


def ok(x, floor):
    return None if x is None else x >= floor


if __name__ == "__main__":
    main()
