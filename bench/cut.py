#!/usr/bin/env python3
"""Cut latency and memory per idle session, for bench/ssh.sh.

One measurement: a fresh amendment for one person (requested, approved by
the approver, certificate refreshed), N live sessions opened through the
single-hop path (`ssh -F CONFIG LOGIN@TARGET 'echo ready; exec cat
>/dev/null'` with stdin a pipe left open and idle: each one its own ssh
process, and with the relaying ProxyCommand its own `jitproxy ssh-proxy`
too; the fd-passing one that `jitproxy ssh-config` prints by default
exits during the handshake; the remote cat ends with the connection,
where a sleep would outlive it on the target), then the
amendment ends: revoked with `jitproxy revoke` (--mode revoke), or left
to expire (--mode expiry, with a short amendment). Every ssh process is
watched through a pidfd, so its exit is timed by the kernel's wake-up, not
by polling.

Latency of one session = the ssh process's exit time - the origin, where
the origin is the revoke's commit time (the time of its amendment.revoked
row in `jitproxy audit export`) or the amendment's expiry instant
(expires_at). It is printed next to the proxy's own figure: the histogram
jitproxy_session_cut_latency_seconds read from GET /metrics before and
after (commit to the session's cut function returning), and the exact
per-session value the proxy logs with its "session cut" line.

With --memory, the jitproxy server's VmRSS (/proc/PID/status) is read
before (after one warm-up session has come and gone) and after the N
sessions are open; the Go heap and stack figures from /metrics as well.
On the client side it counts the processes each session keeps (ssh and
any ProxyCommand still running under it) and their private memory.

Prints one JSON object on stdout; progress goes to stderr.
"""
import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

T0 = time.monotonic()


def log(msg):
    el = time.monotonic() - T0
    print("    [cut %5.1fs] %s" % (el, msg), file=sys.stderr, flush=True)


def parse_time(s):
    """RFC 3339 with up to nanoseconds and a Z or offset -> epoch seconds."""
    s = s.strip()
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError("bad time %r" % s)
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    dt = datetime.fromisoformat(base + tz)
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


class Bench:
    def __init__(self, a):
        self.a = a
        self.env = dict(os.environ, JITPROXY_HOME=a.home, JITPROXY_PROXY=a.proxy)
        self.approver_env = dict(os.environ, JITPROXY_HOME=a.approver_home, JITPROXY_PROXY=a.proxy)
        self.procs = []  # every ssh we started, to kill on the way out

    def cli(self, env, *args, check=True):
        r = subprocess.run([self.a.jitproxy, *args], env=env, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("jitproxy %s: exit %d: %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def metrics(self):
        with urllib.request.urlopen(self.a.proxy + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def live(self):
        return self.metrics().get('jitproxy_sessions_live{kind="ssh"}', 0)

    def client_side(self, procs):
        """Processes per session on the client (each ssh and its children,
        i.e. a relaying ProxyCommand) and their private memory in KiB."""
        kids = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        pids = [p.pid for p in procs]
        pids += [k for p in procs for k in kids.get(p.pid, [])]
        private = 0
        for pid in pids:
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    for line in f:
                        if line.startswith(("Private_Clean:", "Private_Dirty:")):
                            private += int(line.split()[1])
            except OSError:
                pass
        return len(pids) / len(procs), private / len(procs)

    def rss_kib(self):
        with open("/proc/%d/status" % self.a.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.a.pid)

    def wait_live(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.live()
            if n == want:
                return True
            time.sleep(0.1)
        return False

    def ssh_cmd(self):
        a = self.a
        # stdin stays open and idle: the remote cat exits when the session
        # is cut (sshd closes its stdin), where `ssh -n ... sleep` would
        # leave the sleep running on the target after the cut.
        return ["ssh", "-F", a.ssh_config, "-c", a.cipher, "%s@%s" % (a.login, a.target),
                "echo ready; exec cat >/dev/null"]

    def spawn(self):
        p = subprocess.Popen(self.ssh_cmd(), env=self.env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.set_blocking(p.stdout.fileno(), False)
        p.buf = b""
        self.procs.append(p)
        return p

    def open_sessions(self, n):
        """Open n sessions, at most --concurrency handshakes at a time;
        a session that fails before "ready" is retried (a few times)."""
        ready, pending, failures, last_err = [], {}, 0, ""
        todo = n
        poller = select.poll()
        started = time.monotonic()
        next_report = 0
        while len(ready) < n:
            while todo > 0 and len(pending) < self.a.concurrency:
                p = self.spawn()
                pending[p.stdout.fileno()] = p
                poller.register(p.stdout.fileno(), select.POLLIN | select.POLLHUP)
                todo -= 1
            if time.monotonic() - started > self.a.open_timeout:
                raise RuntimeError("opened %d of %d sessions in %ds (%d failures; last: %s)" % (
                    len(ready), n, self.a.open_timeout, failures, last_err))
            for fd, _ in poller.poll(1000):
                p = pending[fd]
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                p.buf += chunk
                if b"ready\n" in p.buf:
                    poller.unregister(fd)
                    del pending[fd]
                    ready.append(p)
                elif not chunk:  # EOF before ready: it failed
                    poller.unregister(fd)
                    del pending[fd]
                    p.wait()
                    p.stdin.close()
                    self.procs.remove(p)
                    failures += 1
                    last_err = p.buf.decode(errors="replace").strip().splitlines()[-1:] or ["exit %d" % p.returncode]
                    last_err = last_err[0]
                    if failures > max(10, n // 10):
                        raise RuntimeError("too many sessions failed to open (%d); last: %s" % (failures, last_err))
                    todo += 1
            if len(ready) >= next_report:
                log("%d/%d sessions open (%.0f/s)" % (len(ready), n, len(ready) / max(time.monotonic() - started, 1e-3)))
                next_report = len(ready) + max(1, n // 5)
        took = time.monotonic() - started
        return ready, failures, last_err, took

    def hist(self, m, reason):
        """The cut latency histogram for reason, as {le: cumulative count}."""
        out = {}
        pre = 'jitproxy_session_cut_latency_seconds_bucket{'
        for k, v in m.items():
            if k.startswith(pre) and ('reason="%s"' % reason) in k:
                le = re.search(r'le="([^"]+)"', k).group(1)
                out[float("inf") if le == "+Inf" else float(le)] = v
        return out

    def run(self):
        a = self.a
        res = {"n": a.n, "mode": a.mode}
        # A fresh amendment for the person.
        dur = a.expiry_for if a.mode == "expiry" else "8h"
        am = json.loads(self.cli(self.env, "request", a.target, "--login", a.login, "--for", dur, "--json").stdout)
        aid = am["id"]
        self.amendment = am["short_id"]  # revoked by cleanup if the run fails
        self.cli(self.approver_env, "approve", am["short_id"])
        am = json.loads(self.cli(self.env, "show", am["short_id"], "--json").stdout)
        if am["state"] != "active":
            raise RuntimeError("amendment %s is %s after approval" % (aid, am["state"]))
        self.cli(self.env, "certs")
        res["amendment"] = aid
        log("amendment %s active until %s" % (am["short_id"], am.get("expires_at")))

        if a.memory:
            # One session comes and goes first, so that the baseline has
            # every code path paged in and every pool made.
            w, _, _, _ = self.open_sessions(1)
            for p in w:
                p.terminate()
                p.wait()
                p.stdin.close()
                self.procs.remove(p)
            self.wait_live(0)
            time.sleep(1)
            m0 = self.metrics()
            res["rss_before_kib"] = self.rss_kib()
            res["heap_inuse_before"] = m0.get("go_memstats_heap_inuse_bytes")
            res["stack_inuse_before"] = m0.get("go_memstats_stack_inuse_bytes")
            res["goroutines_before"] = m0.get("go_goroutines")

        procs, failures, last_err, took = self.open_sessions(a.n)
        res["open_failures"] = failures
        res["open_seconds"] = round(took, 2)
        if failures:
            res["open_last_error"] = last_err
        log("%d sessions open in %.1fs (%d retried)" % (a.n, took, failures))
        if not self.wait_live(a.n, timeout=30):
            log("warning: the proxy counts %s live sessions, expected %d" % (self.live(), a.n))
        procs_per, private_per = self.client_side(procs)
        res["client_procs_per_session"] = round(procs_per, 2)
        res["client_private_kib_per_session"] = round(private_per, 1)
        log("client side: %.2f processes and %.0f KiB private memory per session" % (procs_per, private_per))
        if a.memory:
            time.sleep(2)
            m1 = self.metrics()
            res["rss_after_kib"] = self.rss_kib()
            res["heap_inuse_after"] = m1.get("go_memstats_heap_inuse_bytes")
            res["stack_inuse_after"] = m1.get("go_memstats_stack_inuse_bytes")
            res["goroutines_after"] = m1.get("go_goroutines")
            res["rss_per_session_kib"] = round((res["rss_after_kib"] - res["rss_before_kib"]) / a.n, 1)
            res["go_heap_stack_per_session_kib"] = round(
                (res["heap_inuse_after"] + res["stack_inuse_after"] - res["heap_inuse_before"] - res["stack_inuse_before"]) / 1024 / a.n, 1)
            res["goroutines_per_session"] = round((res["goroutines_after"] - res["goroutines_before"]) / a.n, 1)
            log("jitproxy VmRSS %d -> %d KiB: %.1f KiB per session; %.1f goroutines per session" % (
                res["rss_before_kib"], res["rss_after_kib"], res["rss_per_session_kib"], res["goroutines_per_session"]))

        reason = "revoked" if a.mode == "revoke" else "expired"
        if a.mode == "revoke":
            res["busy_before"] = wait_quiet(a.quiet_max, a.quiet_wait)
            if res["busy_before"] > a.quiet_max:
                log("the machine is %d%% busy (other work); revoking anyway" % res["busy_before"])
        h0 = self.hist(self.metrics(), reason)
        if a.before_cut:
            # e.g. start a profile or an execution trace of the server
            self.hook = subprocess.Popen(a.before_cut, shell=True)
            time.sleep(0.5)

        # Watch every ssh through a pidfd.
        ep = select.epoll()
        byfd = {}
        for p in procs:
            fd = os.pidfd_open(p.pid)
            ep.register(fd, select.EPOLLIN)
            byfd[fd] = p
        exits = {}
        revoke = None
        if a.mode == "revoke":
            origin_hint = time.time()
            t_rev0 = time.time()
            revoke = subprocess.Popen([a.jitproxy, "revoke", am["short_id"], "--reason", "bench cut"],
                                      env=self.approver_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            rfd = os.pidfd_open(revoke.pid)
            ep.register(rfd, select.EPOLLIN)
            deadline = time.monotonic() + a.cut_timeout
            log("revoking %s" % am["short_id"])
        else:
            exp = parse_time(am["expires_at"])
            origin_hint = exp
            rfd = None
            deadline = time.monotonic() + max(0, exp - time.time()) + a.cut_timeout
            log("waiting for the expiry at %s (in %.1fs)" % (am["expires_at"], exp - time.time()))
        t_rev1 = None
        while len(exits) < len(procs) and time.monotonic() < deadline:
            evs = ep.poll(1.0)
            now = time.time()
            for fd, _ in evs:
                if fd == rfd:
                    t_rev1 = now
                    ep.unregister(fd)
                    os.close(fd)
                    revoke.wait()
                    continue
                p = byfd[fd]
                exits[p.pid] = now
                ep.unregister(fd)
                os.close(fd)
        if revoke is not None and t_rev1 is None:
            revoke.wait(timeout=30)
            t_rev1 = time.time()
        if getattr(self, "hook", None):
            self.hook.wait()
        survivors = [p for p in procs if p.pid not in exits]
        for p in survivors:
            p.kill()
        for p in procs:
            p.wait()
        for fd in list(byfd):
            try:
                os.close(fd)
            except OSError:
                pass
        ep.close()
        res["survivors"] = len(survivors)

        # Did each person see why? (the line the proxy writes on stderr)
        told = 0
        for p in procs:
            try:
                rest = p.stdout.read() or b""
            except (BlockingIOError, TypeError):
                rest = b""
            out = (p.buf + rest).decode(errors="replace")
            if "jitproxy: access to" in out and ("revoked" in out or "expired" in out):
                told += 1
        res["told_why"] = told
        res["exit_codes"] = sorted({p.returncode for p in procs})

        # The origin: the revoke's commit (its audit row) or the expiry.
        if a.mode == "revoke":
            if revoke.returncode != 0:
                raise RuntimeError("jitproxy revoke: exit %d: %s" % (revoke.returncode, revoke.stdout.read().decode()))
            origin = None
            exp_out = subprocess.run([a.jitproxy, "audit", "export", "--data", a.data], capture_output=True, text=True, timeout=120)
            for line in exp_out.stdout.splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("type") == "amendment.revoked" and ev.get("amendment") == aid:
                    origin = parse_time(ev["time"])
            if origin is None:
                raise RuntimeError("no amendment.revoked row for %s in the audit export" % aid)
            res["revoke_cli_ms"] = round((t_rev1 - t_rev0) * 1000, 1)
            res["commit_after_cli_start_ms"] = round((origin - t_rev0) * 1000, 1)
        else:
            origin = parse_time(am["expires_at"])
        lat = sorted((t - origin) * 1000 for t in exits.values())
        res.update(pct(lat, "exit"))

        # The proxy's own figure, from the histogram and from its log. A cut
        # may return after its ssh has gone: wait for all N (at most 30s).
        deadline = time.monotonic() + 30
        while True:
            h1 = self.hist(self.metrics(), reason)
            done = h1.get(float("inf"), 0) - h0.get(float("inf"), 0)
            if done >= len(procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        res["proxy_done_after_ms"] = round((time.time() - origin) * 1000, 1)
        delta = {le: h1.get(le, 0) - h0.get(le, 0) for le in h1}
        res["hist_count"] = delta.get(float("inf"), 0)
        res["hist_p50_ms"] = hq(0.50, delta)
        res["hist_p99_ms"] = hq(0.99, delta)
        res["hist_max_bucket_ms"] = hmax(delta)
        if a.server_log:
            vals = []
            with open(a.server_log, errors="replace") as f:
                for line in f:
                    if '"session cut"' not in line or aid not in line:
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if ev.get("message") == "session cut" and "latency" in ev and ev.get("amendment") == aid:
                        vals.append(float(ev["latency"]))  # zerolog: milliseconds
            res.update(pct(sorted(vals), "proxy"))
        log("exit after origin: p50 %s ms, p99 %s ms, max %s ms; proxy: p50 %s ms, p99 %s ms, max %s ms" % (
            res.get("exit_p50_ms"), res.get("exit_p99_ms"), res.get("exit_max_ms"),
            res.get("proxy_p50_ms"), res.get("proxy_p99_ms"), res.get("proxy_max_ms")))
        return res

    def revoke_leftover(self):
        """Revoke the run's amendment if it is still active (a run that
        failed before its cut), so that the next run's sessions do not
        bind to it."""
        short = getattr(self, "amendment", None)
        if not short:
            return
        try:
            am = json.loads(self.cli(self.env, "show", short, "--json").stdout)
            if am.get("state") in ("active", "approved"):
                self.cli(self.env, "revoke", short, "--reason", "bench run failed")
                log("revoked the failed run's amendment %s" % short)
            elif am.get("state") == "pending":
                self.cli(self.env, "withdraw", short)
                log("withdrew the failed run's amendment %s" % short)
        except Exception as e:
            log("warning: could not end amendment %s: %s" % (short, e))

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except Exception:
                pass


def busy(interval=0.5):
    """Percent of the machine's CPU time (all cores) not idle over interval."""
    def read():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return sum(f), f[3] + f[4]
    t0, i0 = read()
    time.sleep(interval)
    t1, i1 = read()
    return round(100 * ((t1 - t0) - (i1 - i0)) / max(1, t1 - t0))


def wait_quiet(limit, wait):
    """Wait (at most wait seconds) until the machine is under limit% busy."""
    deadline = time.monotonic() + wait
    b = busy()
    while b > limit and time.monotonic() < deadline:
        b = busy()
    return b


def pct(vals, prefix):
    if not vals:
        return {prefix + "_count": 0}

    def q(f):
        i = min(len(vals) - 1, max(0, int(round(f * (len(vals) - 1)))))
        return round(vals[i], 2)
    return {prefix + "_count": len(vals), prefix + "_p50_ms": q(0.5), prefix + "_p99_ms": q(0.99),
            prefix + "_max_ms": round(vals[-1], 2), prefix + "_min_ms": round(vals[0], 2)}


def hq(q, buckets):
    """histogram_quantile, as Prometheus computes it, in ms."""
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return None
    total = buckets[les[-1]]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return round(prev_le * 1000, 3)
            if c == prev_c:
                return round(le * 1000, 3)
            return round((prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)) * 1000, 3)
        prev_le, prev_c = le, c
    return None


def hmax(buckets):
    """Upper bound of the highest non-empty bucket, in ms."""
    les = sorted(buckets)
    prev = 0
    top = None
    for le in les:
        if buckets[le] > prev:
            top = le
        prev = buckets[le]
    if top is None:
        return None
    return "inf" if top == float("inf") else round(top * 1000, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jitproxy", required=True)
    ap.add_argument("--proxy", required=True, help="the API URL")
    ap.add_argument("--data", required=True, help="the server's data directory (for audit export)")
    ap.add_argument("--pid", type=int, required=True, help="the jitproxy server's pid (for VmRSS)")
    ap.add_argument("--home", required=True, help="JITPROXY_HOME of the person who connects")
    ap.add_argument("--approver-home", required=True, help="JITPROXY_HOME of the approver (who also revokes)")
    ap.add_argument("--ssh-config", required=True, help="the single-hop ssh config (what jitproxy ssh-config prints)")
    ap.add_argument("--server-log", help="the server's JSON log, for its per-session cut latency")
    ap.add_argument("--target", default="demo-ssh")
    ap.add_argument("--login", default="root")
    ap.add_argument("--cipher", default="aes128-gcm@openssh.com")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--mode", choices=["revoke", "expiry"], default="revoke")
    ap.add_argument("--expiry-for", default="15s", help="the short amendment of --mode expiry")
    ap.add_argument("--memory", action="store_true", help="measure the server's RSS per idle session")
    ap.add_argument("--concurrency", type=int, default=8, help="handshakes in flight while opening")
    ap.add_argument("--open-timeout", type=int, default=300)
    ap.add_argument("--cut-timeout", type=int, default=60)
    ap.add_argument("--before-cut", help="a shell command started in the background 0.5s before the revoke (profiling)")
    ap.add_argument("--quiet-max", type=int, default=25, help="wait before the revoke until the machine is under this %% busy")
    ap.add_argument("--quiet-wait", type=int, default=30, help="... for at most this many seconds")
    a = ap.parse_args()
    b = Bench(a)

    def bye(signum, frame):
        b.cleanup()
        b.revoke_leftover()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    try:
        res = b.run()
    except Exception as e:  # report, clean up, fail
        log("error: %s" % e)
        print(json.dumps({"n": a.n, "mode": a.mode, "error": str(e)}))
        b.cleanup()
        b.revoke_leftover()
        sys.exit(1)
    b.cleanup()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
