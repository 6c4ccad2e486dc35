#!/usr/bin/env bash
# bench/pg.sh: jitproxy's PostgreSQL path against direct and pgbouncer, on
# one machine and one PostgreSQL server.
#
#   bench/pg.sh             # full run (~11-12 min on 2 cores): 3 rounds, -T 15, 5,000 idle connections
#   bench/pg.sh --quick     # smoke run (~2 min): 1 round, -T 3, 1,000 idle connections
#   bench/pg.sh --help      # every option
#
# It starts its own PostgreSQL 15 (initdb into the work dir as the postgres
# user, SCRAM-SHA-256, a free loopback port, max_connections above the idle
# count, pgbench -i -s 10), its own pgbouncer (Debian's; session pooling,
# auth_type scram-sha-256 with an auth_file, a free loopback port) and
# `jitproxy dev` with bench/pg-jitproxy.yaml (recording on and required; a
# self-approving rule; the target is the PostgreSQL above). alice signs in
# through the real login page (bench/browser.py), requests the bench
# role for 8h and takes her DB token from `jitproxy db-env`. No TLS on any
# leg (jitproxy's postgres.allow_plaintext_loopback), except the extra line
# D, which is jitproxy with TLS from pgbench (sslmode=require) to jitproxy.
#
# Then, in interleaved rounds, `pgbench -n -S` (select-only) for each test
# -- simple and extended protocol with -c 8 -j 2, simple and extended with
# -c 1 -j 1 (latency) -- on each path in turn:
#   A  direct      pgbench -> PostgreSQL
#   B  pgbouncer   pgbench -> pgbouncer -> PostgreSQL
#   C  jitproxy    pgbench -> jitproxy (plaintext, recording on) -> PostgreSQL
#   D  jitproxy+TLS (the -c 8 tests only)
#   E  with --floor: bench/pg-relay, the simplest Go TCP relay (read, write,
#      nothing parsed or recorded): what the extra hop alone costs here
# With --syscalls, before the rounds, it counts each proxy's system calls
# per transaction (strace -c -f on pgbouncer, jitproxy and pg-relay during
# pgbench -S -c 8 -t 1500 of each mode; the 8 logins are in the count): the
# figure that contention does not move, and the floor each proxy's design
# sets.
# bench/pg-run.py runs each pgbench and samples CPU time of pgbench,
# PostgreSQL, pgbouncer and jitproxy. Before the rounds, bench/pg-idle opens
# N idle connections through jitproxy (default 5,000) and the script reads
# jitproxy's VmRSS before and after: memory per idle connection. Finally
# bench/pg-report.py prints the table: TPS per path and mode (median of the
# rounds), the ratios C/A, B/A, C/B, D/A, 1-client latency and C-A in µs,
# CPU per transaction, idle memory, and the targets met or missed.
#
# Everything it starts is stopped on exit; everything it writes is under
# --work (default /tmp/jp-pgbench/run-DATE), and the PostgreSQL data
# directory and the recordings are removed unless --keep.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

ROUNDS=3
TIME=15             # seconds per -c 8 run
LAT_TIME=8          # seconds per -c 1 run
CLIENTS=8
THREADS=2
SCALE=10
IDLE=5000
MODES="simple extended"
TLS=1
BIN=/tmp/jp-pgbench/jitproxy
IDLE_BIN=/tmp/jp-pgbench/pg-idle
RELAY_BIN=/tmp/jp-pgbench/pg-relay
FLOOR=0
IDLE_TLS=0
BUILD=1
WORK=""
KEEP=0
PERF=0
HOLD=0
SYSCALLS=0
QUIET_MAX=25        # percent busy (other work) under which a run starts
QUIET_WAIT=15       # seconds to wait for that, at most, before each run
QUIET_BUDGET=60     # seconds to wait for that, at most, in all
ORIG_ARGS="$*"

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	cat <<EOF
Options:
  --quick             1 round, -T 3 (latency runs too), 1,000 idle connections
  --rounds N          interleaved rounds (default $ROUNDS)
  --time SECS         pgbench -T of the -c $CLIENTS runs (default $TIME)
  --lat-time SECS     pgbench -T of the 1-client latency runs (default $LAT_TIME)
  --clients C         pgbench -c of the throughput runs (default $CLIENTS)
  --threads J         pgbench -j of the throughput runs (default $THREADS)
  --scale S           pgbench -i -s (default $SCALE)
  --modes "M ..."     protocols (default "$MODES"; pgbench -M simple|extended|prepared)
  --idle N            idle connections for the memory figure; 0 skips it (default $IDLE)
  --idle-tls          measure idle connections with TLS from the client too (~1 more minute)
  --no-tls            skip line D (jitproxy with TLS from the client)
  --floor             add line E (bench/pg-relay, a bare Go TCP relay); ~3 more minutes
  --syscalls          count system calls per transaction of each proxy (strace -c -f,
                      pgbench -t 1500 per path and mode, before the rounds); ~1 min more
  --quiet-max PCT     wait before each run until the machine is under PCT% busy
                      (default $QUIET_MAX; the machine may be shared)
  --quiet-wait SECS   ... but at most SECS seconds (default $QUIET_WAIT; 0 disables)
  --quiet-budget SECS ... and at most SECS seconds over the whole run (default $QUIET_BUDGET)
  --binary PATH       the jitproxy binary (default $BIN)
  --no-build          use --binary (and $IDLE_BIN, $RELAY_BIN) as they are
  --work DIR          where logs, configs and results go (default /tmp/jp-pgbench/run-DATE)
  --keep              keep the PostgreSQL data directory and the recordings
  --perf              record a perf profile of jitproxy (perf record -g) during each
                      path-C -c $CLIENTS run of round 1, into WORK/perf-MODE.data and .txt
  --hold              set everything up, write WORK/env.sh (the connection strings and
                      passwords), and wait for Ctrl-C instead of measuring
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) ROUNDS=1 TIME=3 LAT_TIME=3 IDLE=1000 ;;
	--rounds) ROUNDS=$2; shift ;;
	--time) TIME=$2; shift ;;
	--lat-time) LAT_TIME=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--threads) THREADS=$2; shift ;;
	--scale) SCALE=$2; shift ;;
	--modes) MODES=$2; shift ;;
	--idle) IDLE=$2; shift ;;
	--idle-tls) IDLE_TLS=1 ;;
	--no-tls) TLS=0 ;;
	--floor) FLOOR=1 ;;
	--quiet-max) QUIET_MAX=$2; shift ;;
	--quiet-wait) QUIET_WAIT=$2; shift ;;
	--quiet-budget) QUIET_BUDGET=$2; shift ;;
	--binary) BIN=$2; shift ;;
	--no-build) BUILD=0 ;;
	--work) WORK=$2; shift ;;
	--keep) KEEP=1 ;;
	--perf) PERF=1 ;;
	--syscalls) SYSCALLS=1 ;;
	--hold) HOLD=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench/pg.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

START=$SECONDS
say() { printf '[%02d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/postgres" ] || die "PostgreSQL's server is not installed (apt-get install postgresql)"
for c in pgbench psql pgbouncer python3 curl setpriv; do
	command -v "$c" >/dev/null || die "$c is not installed (apt-get install postgresql-client pgbouncer python3 curl util-linux)"
done
[ "$(id -u)" = 0 ] || die "run as root: PostgreSQL and pgbouncer are started as the postgres user"
id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "--perf needs perf (apt-get install linux-perf)"
[ "$SYSCALLS" = 0 ] || command -v strace >/dev/null || die "--syscalls needs strace (apt-get install strace)"

WORK=${WORK:-/tmp/jp-pgbench/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
chmod 755 "$WORK"
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
DATA=$WORK/data
PGDIR=$WORK/pg
BOUNCERDIR=$WORK/pgbouncer
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((3 * IDLE + 1000)) ] || die "ulimit -n is $(ulimit -n): too low for $IDLE idle connections (try --idle $(( ($(ulimit -n) - 1000) / 3 )))"

# --- cleanup: everything this script started, by pid --------------------
PG_PID="" BOUNCER_PID="" SERVER_PID="" IDLE_PID="" LOGIN_PID="" PERF_PID="" RELAY_PID=""
stop_pid() { # pid signal name
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
	say "stopping $3 (pid $1)"
	kill "-$2" "$1" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	stop_pid "$PERF_PID" INT perf
	stop_pid "$IDLE_PID" TERM pg-idle
	stop_pid "$LOGIN_PID" TERM "jitproxy login"
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		stop_pid "$SERVER_PID" TERM jitproxy
		kill -KILL -- "-$SERVER_PID" 2>/dev/null # its process group (setsid)
	fi
	stop_pid "$RELAY_PID" TERM pg-relay
	stop_pid "$BOUNCER_PID" TERM pgbouncer # immediate shutdown
	stop_pid "$PG_PID" INT PostgreSQL # fast shutdown
	if [ "$KEEP" = 0 ]; then
		rm -rf "$PGDIR/data" "$DATA/recordings"
	fi
	[ $rc -ne 0 ] && say "failed (exit $rc); logs in $WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ---------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
	mkdir -p "$(dirname "$BIN")" "$(dirname "$IDLE_BIN")" "$(dirname "$RELAY_BIN")"
	say "building jitproxy -> $BIN, pg-idle -> $IDLE_BIN, pg-relay -> $RELAY_BIN"
	(cd "$REPO" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/jitproxy && CGO_ENABLED=0 go build -o "$IDLE_BIN" ./bench/pg-idle &&
		CGO_ENABLED=0 go build -o "$RELAY_BIN" ./bench/pg-relay) >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; die "the build failed"; }
fi
[ -x "$BIN" ] || die "no jitproxy binary at $BIN"
[ "$IDLE" = 0 ] || [ -x "$IDLE_BIN" ] || die "no pg-idle binary at $IDLE_BIN"
[ "$FLOOR" = 0 ] || [ -x "$RELAY_BIN" ] || die "no pg-relay binary at $RELAY_BIN"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORTS=""
newport() {
	local p
	while :; do
		p=$(freeport)
		case " $PORTS " in *" $p "*) ;; *) PORTS="$PORTS $p"; echo "$p"; return ;; esac
	done
}
UP_PORT=$(newport)
BOUNCER_PORT=$(newport)
API_PORT=$(newport)
JP_PORT=$(newport)
PROXY=http://127.0.0.1:$API_PORT
ROLE_PW=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

# --- machine -------------------------------------------------------------
python3 - "$RESULTS" "$ORIG_ARGS" "$PGBIN" <<'EOF'
import json, os, platform, subprocess, sys, time
out, args, pgbin = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def run(*c):
    try:
        r = subprocess.run(c, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
meta = {"kind": "meta", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(), "cpu": cpu,
        "mem_gib": round(int(mem) / 2**20, 1), "kernel": platform.release(), "go": run("go", "version"),
        "postgres": run(pgbin + "/postgres", "--version"), "pgbench": run("pgbench", "--version"),
        "pgbouncer": run("pgbouncer", "--version"), "command": ("bench/pg.sh " + args).strip()}
open(out, "a").write(json.dumps(meta) + "\n")
EOF

# --- PostgreSQL ----------------------------------------------------------
MAXCONN=$((IDLE + 150))
say "initdb and start PostgreSQL on 127.0.0.1:$UP_PORT (max_connections $MAXCONN)"
rm -rf "$PGDIR"
mkdir -p "$PGDIR/sock"
printf '%s\n' "$ROLE_PW" >"$PGDIR/pwfile"
chown -R postgres:postgres "$PGDIR"
chmod 700 "$PGDIR"
asPG() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
asPG "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=scram-sha-256 --pwfile="$PGDIR/pwfile" -E UTF8 --locale=C.UTF-8 --no-sync \
	>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDIR/data/postgresql.conf" <<EOF
# bench/pg.sh
listen_addresses = '127.0.0.1'
port = $UP_PORT
unix_socket_directories = '$PGDIR/sock'
max_connections = $MAXCONN
password_encryption = 'scram-sha-256'
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
# The postmaster itself (no pg_ctl; setpriv execs it): its pid is ours to stop.
setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/postgres" -D "$PGDIR/data" >"$WORK/postgres.log" 2>&1 &
PG_PID=$!
export PGPASSWORD=$ROLE_PW
for i in $(seq 300); do
	psql -X -q -h 127.0.0.1 -p "$UP_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1 && break
	kill -0 "$PG_PID" 2>/dev/null || { tail -20 "$WORK/postgres.log" >&2; die "PostgreSQL exited at start"; }
	sleep 0.1
	[ "$i" = 300 ] && die "PostgreSQL not ready after 30s (see $WORK/postgres.log)"
done
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$UP_PORT" -U postgres -d postgres >/dev/null <<EOF
create role bench login password '$ROLE_PW';
create database bench owner bench;
EOF
say "pgbench -i -s $SCALE"
pgbench -i -s "$SCALE" -q "host=127.0.0.1 port=$UP_PORT user=bench dbname=bench" >"$WORK/pgbench-init.log" 2>&1 ||
	{ cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
PGPASSWORD=$ROLE_PW psql -X -q -h 127.0.0.1 -p "$UP_PORT" -U postgres -d bench -c 'vacuum analyze' >/dev/null

# --- pgbouncer -----------------------------------------------------------
say "start pgbouncer on 127.0.0.1:$BOUNCER_PORT (session pooling, scram-sha-256)"
mkdir -p "$BOUNCERDIR"
printf '"bench" "%s"\n' "$ROLE_PW" >"$BOUNCERDIR/userlist.txt"
cat >"$BOUNCERDIR/pgbouncer.ini" <<EOF
; bench/pg.sh
[databases]
bench = host=127.0.0.1 port=$UP_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $BOUNCERDIR/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $BOUNCERDIR/pgbouncer.log
pidfile =
log_connections = 0
log_disconnections = 0
EOF
chown -R postgres:postgres "$BOUNCERDIR"
chmod 700 "$BOUNCERDIR"
setpriv --reuid=postgres --regid=postgres --init-groups -- pgbouncer "$BOUNCERDIR/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
BOUNCER_PID=$!
for i in $(seq 100); do
	psql -X -q "host=127.0.0.1 port=$BOUNCER_PORT user=bench dbname=bench sslmode=disable" -c 'select 1' >/dev/null 2>&1 && break
	kill -0 "$BOUNCER_PID" 2>/dev/null || { cat "$WORK/pgbouncer.out" "$BOUNCERDIR/pgbouncer.log" >&2; die "pgbouncer exited at start"; }
	sleep 0.1
	[ "$i" = 100 ] && die "pgbouncer not ready after 10s (see $BOUNCERDIR/pgbouncer.log)"
done

# --- the floor: a bare Go TCP relay ----------------------------------------
if [ "$FLOOR" = 1 ]; then
	rm -f "$WORK/relay.addr"
	"$RELAY_BIN" -to "127.0.0.1:$UP_PORT" -addr-file "$WORK/relay.addr" >"$WORK/pg-relay.log" 2>&1 &
	RELAY_PID=$!
	for i in $(seq 50); do [ -s "$WORK/relay.addr" ] && break; sleep 0.1; done
	[ -s "$WORK/relay.addr" ] || die "pg-relay did not start (see $WORK/pg-relay.log)"
	RELAY_PORT=$(sed 's/.*://' "$WORK/relay.addr")
fi

# --- jitproxy ------------------------------------------------------------
sed -e "s/@API_PORT@/$API_PORT/g" -e "s/@PG_PORT@/$JP_PORT/g" -e "s/@UPSTREAM_PORT@/$UP_PORT/g" -e "s/@ROLE_PASSWORD@/$ROLE_PW/g" \
	"$HERE/pg-jitproxy.yaml" >"$WORK/jitproxy.yaml"
chmod 600 "$WORK/jitproxy.yaml"
rm -rf "$DATA"
start_jitproxy() {
	setsid "$BIN" dev --config "$WORK/jitproxy.yaml" --data "$DATA" >>"$WORK/jitproxy.log" 2>&1 &
	SERVER_PID=$!
	for i in $(seq 300); do
		curl -fsS "$PROXY/readyz" >/dev/null 2>&1 && break
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/jitproxy.log" >&2; die "jitproxy exited at start"; }
		sleep 0.1
		[ "$i" = 300 ] && die "jitproxy not ready after 30s (see $WORK/jitproxy.log)"
	done
	[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$BIN")" ] || die "pid $SERVER_PID is not jitproxy"
}
say "start jitproxy dev: API $PROXY, PostgreSQL endpoint 127.0.0.1:$JP_PORT"
: >"$WORK/jitproxy.log"
start_jitproxy

say "alice signs in, requests bench-db for 8h, takes her DB token"
export JITPROXY_PROXY=$PROXY JITPROXY_HOME=$WORK/alice
"$BIN" login --no-browser --timeout 60s >"$WORK/login.out" 2>"$WORK/login.err" &
LOGIN_PID=$!
URL=""
for i in $(seq 100); do
	URL=$(grep -o 'http://[^ ]*' "$WORK/login.err" | head -1 || true)
	[ -n "$URL" ] && break
	sleep 0.1
done
[ -n "$URL" ] || die "jitproxy login printed no URL (see $WORK/login.err)"
python3 "$HERE/browser.py" "$URL" alice alice-pw || die "signing in failed"
wait "$LOGIN_PID" || die "jitproxy login failed (see $WORK/login.err)"
LOGIN_PID=""
"$BIN" request bench-db --role bench --database bench --for 8h --reason "bench/pg.sh" >"$WORK/request.out" 2>&1 ||
	{ cat "$WORK/request.out" >&2; die "the request failed"; }
"$BIN" db-env bench-db --json >"$WORK/db-env.json" 2>"$WORK/db-env.err" || { cat "$WORK/db-env.err" >&2; die "db-env failed"; }
JP_TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/db-env.json") || die "no token in db-env --json"
JP_USER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"])' "$WORK/db-env.json")
JP_DB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dbname"])' "$WORK/db-env.json")
export ROLE_PW JP_TOKEN
unset PGPASSWORD

CONN_A="host=127.0.0.1 port=$UP_PORT user=bench dbname=bench sslmode=disable"
CONN_B="host=127.0.0.1 port=$BOUNCER_PORT user=bench dbname=bench sslmode=disable"
CONN_C="host=127.0.0.1 port=$JP_PORT user=$JP_USER dbname=$JP_DB sslmode=disable"
CONN_D="host=127.0.0.1 port=$JP_PORT user=$JP_USER dbname=$JP_DB sslmode=require"
CONN_E="host=127.0.0.1 port=${RELAY_PORT:-0} user=bench dbname=bench sslmode=disable"
CHECK="A B C D"
[ "$FLOOR" = 1 ] && CHECK="$CHECK E"
for p in $CHECK; do
	v=CONN_$p pw=ROLE_PW
	case $p in C | D) pw=JP_TOKEN ;; esac
	PGPASSWORD=${!pw} psql -X -At "${!v}" -c 'select count(*) from pgbench_branches' >"$WORK/check-$p.out" 2>&1 ||
		{ cat "$WORK/check-$p.out" >&2; die "path $p does not work"; }
done

if [ "$HOLD" = 1 ]; then
	cat >"$WORK/env.sh" <<EOF
# bench/pg.sh --hold: the paths to the benchmark's PostgreSQL
export CONN_A="$CONN_A" CONN_B="$CONN_B" CONN_C="$CONN_C" CONN_D="$CONN_D" CONN_E="$CONN_E"
export ROLE_PW="$ROLE_PW" JP_TOKEN="$JP_TOKEN"
export PG_PID=$PG_PID BOUNCER_PID=$BOUNCER_PID SERVER_PID=$SERVER_PID RELAY_PID=$RELAY_PID
export JITPROXY_PROXY=$PROXY JITPROXY_HOME=$WORK/alice
# e.g.: PGPASSWORD=\$JP_TOKEN pgbench -n -S -c 8 -j 2 -T 15 "\$CONN_C"
EOF
	say "holding: source $WORK/env.sh; Ctrl-C (or kill $$) stops everything"
	while :; do sleep 1; done
fi

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- idle connections: jitproxy's memory per connection --------------------
idle_test() { # label conninfo
	say "opening $IDLE idle connections through jitproxy ($1)"
	sleep 2
	local before after open r avail0 avail1 fds threads
	before=$(rss_kib "$SERVER_PID")
	avail0=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
	rm -f "$WORK/idle.ready"
	PGPASSWORD=$JP_TOKEN "$IDLE_BIN" -dsn "$2" -n "$IDLE" -parallel 8 -keep-going -ready "$WORK/idle.ready" >"$WORK/idle-$1.log" 2>&1 &
	IDLE_PID=$!
	for i in $(seq 3000); do
		[ -s "$WORK/idle.ready" ] && break
		kill -0 "$IDLE_PID" 2>/dev/null || { cat "$WORK/idle-$1.log" >&2; die "pg-idle exited"; }
		sleep 0.1
		[ "$i" = 3000 ] && die "pg-idle did not finish opening in 300s (see $WORK/idle-$1.log)"
	done
	open=$(cat "$WORK/idle.ready")
	# Let jitproxy settle (login garbage collected, stacks shrunk) and
	# take the lowest of a few readings.
	after=""
	for _ in 1 2 3 4 5; do
		sleep 2
		r=$(rss_kib "$SERVER_PID")
		if [ -z "$after" ] || [ "$r" -lt "$after" ]; then after=$r; fi
	done
	avail1=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
	fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
	threads=$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status")
	say "jitproxy VmRSS $before KiB -> $after KiB with $open idle connections ($1): $(((after - before) * 1024 / (open > 0 ? open : 1))) bytes each"
	python3 - "$RESULTS" "$1" "$IDLE" "$open" "$before" "$after" "$avail0" "$avail1" "$fds" "$threads" <<'EOF'
import json, sys
out, label, want, got, before, after, av0, av1, fds, threads = sys.argv[1:]
rec = {"kind": "idle", "label": label, "wanted": int(want), "open": int(got), "rss_before_kib": int(before),
       "rss_after_kib": int(after), "bytes_per_conn": round((int(after) - int(before)) * 1024 / max(1, int(got))),
       "machine_mem_used_mib": round((int(av0) - int(av1)) / 1024), "fds": int(fds), "threads": int(threads)}
open(out, "a").write(json.dumps(rec) + "\n")
EOF
	stop_pid "$IDLE_PID" TERM pg-idle
	IDLE_PID=""
	# Wait for the sessions to end before going on.
	for _ in $(seq 300); do
		n=$(PGPASSWORD=$ROLE_PW psql -X -At "$CONN_A" -c "select count(*) from pg_stat_activity where application_name like 'jitproxy/%'" 2>/dev/null || echo 99999)
		[ "$n" -le 0 ] 2>/dev/null && break
		sleep 0.2
	done
}
if [ "$IDLE" -gt 0 ]; then
	idle_test plaintext "$CONN_C"
	if [ "$IDLE_TLS" = 1 ]; then
		# A fresh process, so that the first test's freed memory does not
		# hide the second's (the amendment and the token are in $DATA).
		say "restarting jitproxy"
		stop_pid "$SERVER_PID" TERM jitproxy
		start_jitproxy
		idle_test tls "$CONN_D"
	fi
fi

# --- rounds --------------------------------------------------------------
run() { # round path mode clients threads seconds
	local v=CONN_$2 pwvar=ROLE_PW
	case $2 in C | D) pwvar=JP_TOKEN ;; esac
	python3 "$HERE/pg-run.py" --out "$RESULTS" --round "$1" --path "$2" --mode "$3" --clients "$4" --threads "$5" --time "$6" \
		--conn "${!v}" --password-env "$pwvar" --postmaster "$PG_PID" --proc "jitproxy=$SERVER_PID" --proc "pgbouncer=$BOUNCER_PID" ${RELAY_PID:+--proc "pg-relay=$RELAY_PID"} \
		--quiet-max "$QUIET_MAX" --quiet-wait "$QUIET_WAIT" --quiet-budget-file "$WORK/quiet-budget" || die "pgbench failed on path $2 (round $1, $3, -c $4)"
}
perf_start() { # mode
	perf record -g -F 999 -p "$SERVER_PID" -o "$WORK/perf-$1.data" >"$WORK/perf-$1.log" 2>&1 &
	PERF_PID=$!
	sleep 0.5
}
perf_stop() { # mode
	stop_pid "$PERF_PID" INT perf
	PERF_PID=""
	perf report -i "$WORK/perf-$1.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -60 >"$WORK/perf-$1.txt" || true
}
# --- system calls per transaction ------------------------------------------
syscalls() { # path pid mode
	local v=CONN_$1 pwvar=ROLE_PW out=$WORK/strace-$1-$3.txt log=$WORK/strace-pgbench-$1-$3.log sp
	case $1 in C | D) pwvar=JP_TOKEN ;; esac
	strace -c -f -p "$2" -o "$out" 2>/dev/null &
	sp=$!
	sleep 0.5
	PGPASSWORD=${!pwvar} pgbench -n -S -M "$3" -c "$CLIENTS" -j "$THREADS" -t 1500 "${!v}" >"$log" 2>&1 ||
		{ kill -INT "$sp"; wait "$sp"; die "pgbench failed on path $1 under strace (see $log)"; }
	kill -INT "$sp"
	wait "$sp" || true
	python3 - "$RESULTS" "$1" "$3" "$out" "$log" <<'EOF'
import json, re, sys
out, path, mode, trace, log = sys.argv[1:]
tx = int(re.search(r"actually processed: (\d+)", open(log).read()).group(1))
if tx == 0:
    sys.exit("bench/pg.sh: no transaction on path %s under strace (see %s)" % (path, log))
calls = {}
for line in open(trace):
    f = line.split()
    if len(f) >= 5 and re.fullmatch(r"[\d.]+", f[0]) and f[3].isdigit():
        calls[f[-1]] = int(f[3])
total = calls.pop("total", sum(calls.values()))
rec = {"kind": "syscalls", "path": path, "mode": mode, "tx": tx, "per_tx": {k: round(v / tx, 3) for k, v in calls.items()},
       "total_per_tx": round(total / tx, 3)}
open(out, "a").write(json.dumps(rec) + "\n")
EOF
}
if [ "$SYSCALLS" = 1 ]; then
	for m in $MODES; do
		say "system calls per transaction, $m (strace -c -f)"
		syscalls B "$BOUNCER_PID" "$m"
		syscalls C "$SERVER_PID" "$m"
		[ "$TLS" = 1 ] && syscalls D "$SERVER_PID" "$m"
		[ "$FLOOR" = 1 ] && syscalls E "$RELAY_PID" "$m"
	done
fi

echo "$QUIET_BUDGET" >"$WORK/quiet-budget"
say "$ROUNDS round(s): pgbench -S -c $CLIENTS -j $THREADS -T $TIME and -c 1 -j 1 -T $LAT_TIME, modes: $MODES"
for r in $(seq "$ROUNDS"); do
	for m in $MODES; do
		paths="A B C"
		[ "$TLS" = 1 ] && paths="$paths D"
		[ "$FLOOR" = 1 ] && paths="$paths E"
		for p in $paths; do
			if [ "$PERF" = 1 ] && [ "$r" = 1 ] && [ "$p" = C ]; then
				perf_start "$m"
				run "$r" "$p" "$m" "$CLIENTS" "$THREADS" "$TIME"
				perf_stop "$m"
			else
				run "$r" "$p" "$m" "$CLIENTS" "$THREADS" "$TIME"
			fi
		done
	done
	for m in $MODES; do
		paths="A B C"
		[ "$FLOOR" = 1 ] && paths="$paths E"
		for p in $paths; do run "$r" "$p" "$m" 1 1 "$LAT_TIME"; done
	done
done

echo "jitproxy log lines: $(wc -l <"$WORK/jitproxy.log"), recordings: $(du -sh "$DATA/recordings" 2>/dev/null | cut -f1)" >&2
say "done in $((SECONDS - START))s; results in $RESULTS"
python3 "$HERE/pg-report.py" "$RESULTS" | tee "$WORK/report.txt"
