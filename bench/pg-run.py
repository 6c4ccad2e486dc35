#!/usr/bin/env python3
"""Run one pgbench measurement for bench/pg.sh and append it as a JSON line.

usage: pg-run.py --out FILE --round N --path NAME --mode simple|extended
                 --clients C --threads J --time T --conn CONNINFO
                 [--password-env VAR] [--postmaster PID] [--proc NAME=PID ...]
                 [--quiet-max PCT] [--quiet-wait SECS] [--quiet-budget-file FILE]

Before the run it waits (at most --quiet-wait seconds, and at most what is
left of the seconds in --quiet-budget-file, which it updates) until the
machine is less than --quiet-max percent busy, since other work on a shared
machine skews a benchmark. Around the run it samples CPU time: the whole machine
(/proc/stat), pgbench itself (rusage of the child), every PostgreSQL process
(the postmaster, its live children, and its reaped children's cutime), and
each --proc (the proxy). The JSON line has tps, latency (ms), and CPU
microseconds per transaction of each, so a table can say where the time
goes.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def machine():
    """(busy, total) jiffies of the whole machine."""
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def proc_cpu(pid, children=False):
    """CPU seconds of pid (and of its reaped children); None if gone."""
    try:
        s = open("/proc/%d/stat" % pid).read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    # fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / TICK


def postgres_cpu(postmaster):
    """CPU seconds of the postmaster, its live children and its reaped ones."""
    total = proc_cpu(postmaster, children=True) or 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            s = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        if int(f[1]) == postmaster:
            total += (int(f[11]) + int(f[12])) / TICK
    return total


def wait_quiet(max_pct, max_wait):
    """Wait until the machine is under max_pct busy (at most max_wait
    seconds after the first reading); return the last reading and the
    seconds waited."""
    start = time.time()
    while True:
        b0, t0 = machine()
        time.sleep(1)
        b1, t1 = machine()
        pct = 100.0 * (b1 - b0) / max(1, t1 - t0)
        waited = time.time() - start - 1
        if pct < max_pct or waited >= max_wait:
            return pct, waited


def budget(path, spend=None):
    """The seconds left in the budget file; with spend, takes them off."""
    try:
        left = float(open(path).read().strip() or 0)
    except (OSError, ValueError):
        left = 0.0
    if spend is not None:
        left = max(0.0, left - spend)
        open(path, "w").write("%.1f\n" % left)
    return left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--mode", required=True, choices=["simple", "extended", "prepared"])
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--time", type=int, required=True)
    ap.add_argument("--conn", required=True)
    ap.add_argument("--password-env", default="")
    ap.add_argument("--postmaster", type=int, default=0)
    ap.add_argument("--proc", action="append", default=[])
    ap.add_argument("--quiet-max", type=float, default=25)
    ap.add_argument("--quiet-wait", type=float, default=0)
    ap.add_argument("--quiet-budget-file", default="")
    a = ap.parse_args()

    procs = {}
    for p in a.proc:
        name, pid = p.split("=", 1)
        procs[name] = int(pid)
    env = dict(os.environ)
    if a.password_env:
        env["PGPASSWORD"] = os.environ[a.password_env]

    quiet, waited = None, 0.0
    if a.quiet_wait > 0:
        most = a.quiet_wait
        if a.quiet_budget_file:
            most = min(most, budget(a.quiet_budget_file))
        quiet, waited = wait_quiet(a.quiet_max, most)
        if a.quiet_budget_file:
            budget(a.quiet_budget_file, waited)
    cmd = ["pgbench", "-n", "-S", "-M", a.mode, "-c", str(a.clients), "-j", str(a.threads), "-T", str(a.time), a.conn]
    b0, t0 = machine()
    p0 = {n: proc_cpu(pid) for n, pid in procs.items()}
    pg0 = postgres_cpu(a.postmaster) if a.postmaster else None
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Backends of direct connections exit as pgbench disconnects: let the
    # postmaster reap them so their time is counted.
    time.sleep(0.3)
    b1, t1 = machine()
    p1 = {n: proc_cpu(pid) for n, pid in procs.items()}
    pg1 = postgres_cpu(a.postmaster) if a.postmaster else None

    out = r.stdout + r.stderr
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    txs = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if r.returncode != 0 or not tps or not txs:
        sys.stderr.write("pg-run.py: %s failed (exit %d):\n%s\n" % (" ".join(cmd[:-1]), r.returncode, out))
        sys.exit(1)
    n = int(txs.group(1))
    cpu = {"machine": (b1 - b0) / TICK, "pgbench": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)}
    if pg0 is not None:
        cpu["postgres"] = pg1 - pg0
    for name in procs:
        if p0[name] is not None and p1[name] is not None:
            cpu[name] = p1[name] - p0[name]
    rec = {
        "kind": "run", "round": a.round, "path": a.path, "mode": a.mode, "clients": a.clients,
        "threads": a.threads, "seconds": a.time, "tps": float(tps.group(1)),
        "latency_ms": float(lat.group(1)) if lat else None, "transactions": n,
        "failed": int(failed.group(1)) if failed else 0,
        "cpu_us_per_tx": {k: round(v * 1e6 / max(1, n), 2) for k, v in cpu.items()},
        "machine_busy_pct": round(100.0 * (b1 - b0) / max(1, t1 - t0), 1),
        "quiet_before_pct": None if quiet is None else round(quiet, 1), "quiet_waited_s": round(waited, 1),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    lat_s = "%.3f ms" % rec["latency_ms"] if rec["latency_ms"] is not None else "-"
    print("round %d  %-9s %-8s c=%-2d  %9.0f tps  latency %s" % (a.round, a.path, a.mode, a.clients, rec["tps"], lat_s))


if __name__ == "__main__":
    main()
