#!/usr/bin/env bash
# bench/ssh.sh: jitproxy's SSH path against plain OpenSSH, on one machine.
#
#   bench/ssh.sh             # full run (~15 min on 2 busy cores): 512 MiB, 3 rounds, 1000/100/1 sessions
#   bench/ssh.sh --quick     # smoke run (~4 min): 64 MiB, 2 rounds, 100/10/1 sessions
#   bench/ssh.sh --help      # every option
#
# It builds jitproxy, runs `jitproxy dev` with bench/jitproxy-bench.yaml on
# free loopback ports (its demo sshd is the target; recording is on), signs
# in alice, bob and dave through the real login page (bench/browser.py),
# gets alice an 8h amendment approved by bob, starts a second private sshd
# as a plain OpenSSH jump host, and measures these paths to the same sshd,
# with aes128-gcm@openssh.com (and curve25519-sha256) pinned on every hop:
#   A  direct:               ssh bench-direct
#   B  OpenSSH -J bastion:   ssh -J bench-jump bench-direct
#   C  jitproxy single hop:  ssh $USER@demo-ssh   (the block jitproxy ssh-config prints:
#                            ssh-proxy --fdpass hands the socket to ssh, ProxyUseFdpass yes)
#   D  jitproxy -J:          ssh -J alice@BASTION $USER@demo-ssh
#   E  relay ProxyCommand:   C with jitproxy ssh-config --relay (ssh-proxy relays every byte)
# First cut latency (bench/cut.py): 1,000 / 100 / 1 live sessions on one
# amendment revoked with jitproxy revoke, and one session on a short
# amendment left to expire; memory per idle session at the largest count.
# Then, interleaved A B C D E per round: throughput (head -c SIZE /dev/zero
# | ssh ... 'cat > /dev/null'; ssh ... 'head -c DOWN /dev/zero' > /dev/null;
# ssh ... 'head -c SIZE /dev/zero | tr ...'), MiB/s from wall time, and
# connection time (ssh ... true; sftp -b /dev/null). Finally the table
# (bench/report.py) with the ratios and the targets met or missed.
#
# Needs only Debian's openssh-client/server, python3, curl, coreutils and Go
# (to build). Everything it starts is stopped on exit; everything it writes
# is under --work (default /tmp/jp-bench/run-DATE). BENCHMARKS.md has the
# figures and what limits them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

ROUNDS=3
SIZE=512            # MiB per transfer
DOWN=""             # MiB of the NUL-byte download (default SIZE/2: it records 6 bytes a byte)
CONN=6              # connection-time samples per path per round
SESSIONS="1000 100 1"
EXPIRY_FOR=15s
CONCURRENCY=8
BIN=/tmp/jp-bench/jitproxy
BUILD=1
WORK=""
KEEP=0
HOLD=0
PROFILE=0
DO_XFER=1
DO_CUT=1
CIPHER=aes128-gcm@openssh.com
KEX=curve25519-sha256   # what x/crypto/ssh and OpenSSH 9.2 agree on; "default" leaves OpenSSH's own
RELAY=1
DIRS="up down text"
ISOLATE=0
NICE=""
QUIET_MAX=25      # percent busy (other work) under which a measurement starts
QUIET_WAIT=10     # seconds to wait for that, at most, before each measurement
QUIET_BUDGET=60   # seconds of such waiting, at most, in the whole run
ORIG_ARGS="$*"

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	cat <<EOF
Options:
  --quick             64 MiB, 2 rounds, 5 connection samples, sessions "100 10 1", 10s expiry
  --rounds N          interleaved rounds (default $ROUNDS)
  --size MIB          MiB per transfer (default $SIZE)
  --down MIB          MiB of the server->client transfer of NUL bytes (default SIZE/2:
                      its recording is 6 bytes a byte, and the slowest part of a run)
  --conn N            connection-time samples per path per round (default $CONN)
  --sessions "N ..."  live-session counts for the revoke test, largest first; the
                      largest also measures memory (default "$SESSIONS")
  --expiry-for DUR    the short amendment of the expiry test (default $EXPIRY_FOR)
  --concurrency N     handshakes in flight while opening sessions (default $CONCURRENCY)
  --quiet-max PCT     wait before each measurement until the machine is under PCT% busy
                      with other work (default $QUIET_MAX; the machine may be shared)
  --quiet-wait SECS   ... but at most SECS seconds (default $QUIET_WAIT; 0 disables)
  --quiet-budget SECS ... and at most SECS seconds in the whole run (default $QUIET_BUDGET)
  --no-throughput     skip throughput and connection time
  --no-cut            skip cut latency and memory
  --profile           also record perf profiles of C and D transfers (needs perf)
  --binary PATH       the jitproxy binary (default $BIN)
  --no-build          use --binary as it is
  --work DIR          where logs, configs and results go (default /tmp/jp-bench/run-DATE)
  --kex NAME          key exchange pinned on the OpenSSH legs (default $KEX, the one
                      every jitproxy leg negotiates with OpenSSH 9.2); "default" pins nothing
  --no-text           skip the third transfer (server->client of printable bytes, which
                      the recording stores 1:1, where NUL bytes take 6 bytes each)
  --isolate           pin jitproxy to CPU 0 and everything else (clients, sshds) to the
                      other CPUs, as if the proxy had a machine of its own
  --nice N            run jitproxy at nice N (e.g. -10; the demo sshd it starts is put
                      back to 0), to see how much of the cut latency is the scheduler's
  --no-relay          skip path E (the single hop with the relaying ProxyCommand,
                      jitproxy ssh-config --relay)
  --hold              set everything up, write WORK/env.sh, and wait (for profiling
                      by hand) until interrupted; then clean up
  --keep              keep the jitproxy data directory (recordings are deleted as they go)
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) SIZE=64 ROUNDS=2 CONN=5 SESSIONS="100 10 1" EXPIRY_FOR=10s ;;
	--rounds) ROUNDS=$2; shift ;;
	--size) SIZE=$2; shift ;;
	--down) DOWN=$2; shift ;;
	--conn) CONN=$2; shift ;;
	--sessions) SESSIONS=$2; shift ;;
	--expiry-for) EXPIRY_FOR=$2; shift ;;
	--concurrency) CONCURRENCY=$2; shift ;;
	--quiet-max) QUIET_MAX=$2; shift ;;
	--quiet-wait) QUIET_WAIT=$2; shift ;;
	--quiet-budget) QUIET_BUDGET=$2; shift ;;
	--no-throughput) DO_XFER=0 ;;
	--no-cut) DO_CUT=0 ;;
	--profile) PROFILE=1 ;;
	--binary) BIN=$2; shift ;;
	--no-build) BUILD=0 ;;
	--work) WORK=$2; shift ;;
	--keep) KEEP=1 ;;
	--hold) HOLD=1 ;;
	--kex) KEX=$2; shift ;;
	--no-relay) RELAY=0 ;;
	--no-text) DIRS="up down" ;;
	--isolate) ISOLATE=1 ;;
	--nice) NICE=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench/ssh.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
DOWN=${DOWN:-$((SIZE / 2))}
[ "$DOWN" -ge 1 ] || DOWN=1

START=$SECONDS
say() { printf '[%02d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }

for c in ssh ssh-keygen /usr/sbin/sshd python3 curl head timeout setsid; do
	command -v "$c" >/dev/null || die "$c is not installed (apt-get install openssh-client openssh-server python3 curl coreutils)"
done
[ "$PROFILE" = 0 ] || command -v perf >/dev/null || die "--profile needs perf"

# The interpreter itself, not a version manager's shim (pyenv's costs
# about 280 ms a start here). Arithmetic is awk's: no interpreter per sample.
PY=$(python3 -c 'import sys; print(sys.executable)')
calc() { awk "BEGIN { printf \"$1\", $2 }"; } # calc FORMAT EXPR
WORK=${WORK:-/tmp/jp-bench/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
DATA=$WORK/data
LOGIN=$(id -un) # the demo sshd runs as us, and so is its only login
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- cleanup: everything this script started, by pid --------------------
SERVER_PID="" JUMP_PID="" PERF_PID=""
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
	if [ -n "$JUMP_PID" ] && kill -0 "$JUMP_PID" 2>/dev/null; then
		kill "$JUMP_PID"; wait "$JUMP_PID" 2>/dev/null
	fi
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		say "stopping jitproxy (pid $SERVER_PID)"
		kill -TERM "$SERVER_PID"
		for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		# jitproxy dev stops its demo sshd itself; its process group is ours (setsid).
		kill -KILL -- "-$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	if [ "$KEEP" = 0 ] && [ -d "$DATA" ]; then rm -rf "$DATA/recordings"; fi
	[ $rc -ne 0 ] && say "failed (exit $rc); logs in $WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ---------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
	mkdir -p "$(dirname "$BIN")"
	for attempt in 1 2 3 4; do
		say "building jitproxy -> $BIN"
		if (cd "$REPO" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/jitproxy) 2>"$WORK/build.log"; then break; fi
		[ $attempt = 4 ] && { cat "$WORK/build.log" >&2; die "the build failed 4 times (is proxy/ssh mid-edit?)"; }
		say "build failed (someone may be mid-edit): retrying in 60s"; sed 's/^/    /' "$WORK/build.log" | head -5 >&2
		sleep 60
	done
fi
[ -x "$BIN" ] || die "no jitproxy binary at $BIN"

# --- machine -------------------------------------------------------------
"$PY" - "$RESULTS" "$ORIG_ARGS" "$CIPHER" "$SIZE" "$ROUNDS" "$CONN" "$KEX" "$ISOLATE" "$DOWN" "$NICE" <<'EOF'
import json, os, platform, subprocess, sys, time
out, args, cipher, size, rounds, conn, kex, isolate, down, nice = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def run(*c):
    try:
        r = subprocess.run(c, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception as e:
        return "?"
meta = {"kind": "meta", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(), "cpu": cpu,
        "kernel": platform.release(), "go": run("go", "version"), "openssh": run("ssh", "-V"),
        "command": ("bench/ssh.sh " + args).strip(), "cipher": cipher, "kex": kex, "isolate": isolate == "1", "nice": nice or None, "size_mib": int(size), "down_mib": int(down), "rounds": int(rounds),
        "conn_samples": int(conn)}
open(out, "a").write(json.dumps(meta) + "\n")
EOF

freeport() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT=$(freeport) SSH_PORT=$(freeport) JUMP_PORT=$(freeport)
while [ "$SSH_PORT" = "$API_PORT" ]; do SSH_PORT=$(freeport); done
while [ "$JUMP_PORT" = "$API_PORT" ] || [ "$JUMP_PORT" = "$SSH_PORT" ]; do JUMP_PORT=$(freeport); done
PROXY=http://127.0.0.1:$API_PORT
BASTION=127.0.0.1:$SSH_PORT

# --- jitproxy dev ---------------------------------------------------------
sed -e "s/@API_PORT@/$API_PORT/g" -e "s/@SSH_PORT@/$SSH_PORT/g" "$HERE/jitproxy-bench.yaml" >"$WORK/jitproxy.yaml"
rm -rf "$DATA"
say "starting jitproxy dev: API $PROXY, bastion $BASTION (work dir $WORK)"
PIN=()
if [ "$ISOLATE" = 1 ]; then
	command -v taskset >/dev/null || die "--isolate needs taskset (util-linux)"
	[ "$(nproc)" -ge 2 ] || die "--isolate needs 2 CPUs or more"
	REST=1-$(($(nproc) - 1))
	taskset -p -c "$REST" $$ >/dev/null
	PIN=(taskset -c 0)
	say "isolating: jitproxy on CPU 0; this script, the clients and the sshds on CPUs $REST"
fi
if [ -n "$NICE" ]; then
	[[ $NICE =~ ^-?[0-9]+$ ]] || die "--nice needs a number"
	PIN+=(nice -n "$NICE")
	say "jitproxy runs at nice $NICE"
fi
setsid "${PIN[@]}" "$BIN" dev --config "$WORK/jitproxy.yaml" --data "$DATA" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 300); do
	curl -fsS "$PROXY/readyz" >/dev/null 2>&1 && break
	kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "jitproxy exited at start"; }
	sleep 0.1
	[ "$i" = 300 ] && die "jitproxy not ready after 30s (see $WORK/server.log)"
done
[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$BIN")" ] || die "pid $SERVER_PID is not jitproxy"

DEMO_PORT=$(awk '$1 == "Port" {print $2}' "$DATA/demo-sshd/sshd_config")
if [ "$ISOLATE" = 1 ]; then
	# The demo sshd is jitproxy's child, so it started on CPU 0: move it
	# (its later children inherit that).
	taskset -a -p -c "$REST" "$(cat "$DATA/demo-sshd/sshd.pid")" >/dev/null
fi
if [ -n "$NICE" ]; then
	# The demo sshd inherited jitproxy's nice: put it (and so its session
	# children) back, so that only jitproxy runs at a different priority.
	renice -n 0 -p "$(cat "$DATA/demo-sshd/sshd.pid")" >/dev/null
fi
[ -n "$DEMO_PORT" ] || die "no demo sshd (is openssh-server installed?)"
DEMO_HOSTKEY=$(ssh-keygen -y -f "$DATA/demo-sshd/ssh_host_ed25519_key")

jp() { # jp PERSON ARGS...: the CLI as PERSON
	local who=$1; shift
	JITPROXY_HOME=$WORK/home-$who JITPROXY_PROXY=$PROXY "$BIN" "$@"
}
login() { # login PERSON: jitproxy login --no-browser, signed in by bench/browser.py
	local who=$1 err=$WORK/login-$1.err url="" pid
	JITPROXY_HOME=$WORK/home-$who JITPROXY_PROXY=$PROXY timeout 60 "$BIN" login --no-browser >/dev/null 2>"$err" &
	pid=$!
	for _ in $(seq 200); do
		url=$(grep -m1 -o '^http://[^ ]*/auth/login?[^ ]*$' "$err" || true)
		[ -n "$url" ] && break
		sleep 0.05
	done
	[ -n "$url" ] || die "jitproxy login printed no URL: $(cat "$err")"
	"$PY" "$HERE/browser.py" "$url" "$who" "$who-pw" || die "signing in $who failed"
	wait "$pid" || die "jitproxy login for $who failed: $(cat "$err")"
}
for who in alice bob dave; do login $who; done
say "signed in alice, bob and dave"

ID=$(jp alice request demo-ssh --login "$LOGIN" --for 8h | awk '{print $1}')
jp bob approve "$ID" >/dev/null
jp alice certs >/dev/null
jp dave certs >/dev/null 2>&1 || true # dave has no amendment yet: cut.py gets him one each time
say "alice's amendment $ID approved by bob; certificate in $WORK/home-alice"

KEXLINE=""
[ "$KEX" = default ] || KEXLINE="
    KexAlgorithms $KEX"
COMMON="Host *$KEXLINE
    BatchMode yes
    LogLevel ERROR
    Ciphers $CIPHER
    Compression no
    UpdateHostKeys no
    ControlMaster no
    ControlPath none
    ForwardAgent no
    ForwardX11 no
    RequestTTY no"

# C: what jitproxy ssh-config prints (fd passing), plus the pinned cipher.
{ jp alice ssh-config; echo "$COMMON"; } >"$WORK/c.ssh_config"
{ jp dave ssh-config; echo "$COMMON"; } >"$WORK/dave.ssh_config"
grep -q '^    ProxyUseFdpass yes$' "$WORK/c.ssh_config" || die "jitproxy ssh-config printed no ProxyUseFdpass (see $WORK/c.ssh_config)"
# E: the relay form (jitproxy ssh-config --relay): the same preamble, then
# ssh-proxy copies every byte between ssh's pipes and the socket.
{ jp alice ssh-config --relay; echo "$COMMON"; } >"$WORK/e.ssh_config"
# D: ssh -J with nothing but alice's certificate; -F reaches the jump leg too.
AH=$WORK/home-alice
cat >"$WORK/d.ssh_config" <<EOF
Host *
    IdentityFile $AH/id_ed25519
    CertificateFile $AH/id_ed25519-cert.pub
    IdentitiesOnly yes
    UserKnownHostsFile $AH/known_hosts
    StrictHostKeyChecking yes
$(echo "$COMMON" | tail -n +2)
EOF

# A and B: a key with a certificate from jitproxy's user CA for the login
# (the demo sshd trusts only that CA); the jump host's own key pair.
mkdir -p "$WORK/direct" "$WORK/jump"
rm -f "$WORK"/direct/id_ed25519* "$WORK"/jump/id_ed25519* "$WORK"/jump/ssh_host_ed25519_key*
ssh-keygen -q -t ed25519 -N '' -C bench-direct -f "$WORK/direct/id_ed25519"
ssh-keygen -q -s "$DATA/ca/user_ca" -I bench-direct -n "$LOGIN" -V +8h "$WORK/direct/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C bench-jump -f "$WORK/jump/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-jump-host -f "$WORK/jump/ssh_host_ed25519_key"
cp "$WORK/jump/id_ed25519.pub" "$WORK/jump/authorized_keys"
root=no; [ "$(id -u)" = 0 ] && root=prohibit-password
cat >"$WORK/jump/sshd_config" <<EOF
# The plain OpenSSH jump host of path B.
ListenAddress 127.0.0.1
Port $JUMP_PORT
HostKey $WORK/jump/ssh_host_ed25519_key
PidFile $WORK/jump/sshd.pid
AuthorizedKeysFile $WORK/jump/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin $root
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
LogLevel ERROR
EOF
/usr/sbin/sshd -D -e -f "$WORK/jump/sshd_config" 2>"$WORK/jump/sshd.log" &
JUMP_PID=$!
for i in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$JUMP_PORT") 2>/dev/null && break
	kill -0 "$JUMP_PID" 2>/dev/null || die "the jump sshd exited: $(cat "$WORK/jump/sshd.log")"
	sleep 0.05
done
{
	echo "[127.0.0.1]:$DEMO_PORT $DEMO_HOSTKEY"
	echo "[127.0.0.1]:$JUMP_PORT $(cat "$WORK/jump/ssh_host_ed25519_key.pub")"
} >"$WORK/openssh.known_hosts"
cat >"$WORK/openssh.ssh_config" <<EOF
Host bench-direct
    HostName 127.0.0.1
    Port $DEMO_PORT
    User $LOGIN
    IdentityFile $WORK/direct/id_ed25519
    CertificateFile $WORK/direct/id_ed25519-cert.pub
Host bench-jump
    HostName 127.0.0.1
    Port $JUMP_PORT
    User $LOGIN
    IdentityFile $WORK/jump/id_ed25519
Host *
    IdentitiesOnly yes
    UserKnownHostsFile $WORK/openssh.known_hosts
    StrictHostKeyChecking yes
$(echo "$COMMON" | tail -n +2)
EOF
say "demo sshd (the target) on 127.0.0.1:$DEMO_PORT; OpenSSH jump host on 127.0.0.1:$JUMP_PORT"

# --- the four paths -------------------------------------------------------
PATHS="A B C D"
[ "$RELAY" = 1 ] && PATHS="A B C D E"
declare -A NAME=([A]="direct" [B]="OpenSSH -J" [C]="jitproxy single hop" [D]="jitproxy -J" [E]="single hop, relay ProxyCommand")
declare -A FAILED=()
# path P [ssh options...]: sets CMD to the ssh command line of path P, to
# which the caller appends the remote command. TOOL=sftp makes it sftp's.
path() {
	local p=$1; shift
	local t=${TOOL:-ssh}
	case $p in
	A) CMD=($t -F "$WORK/openssh.ssh_config" -c "$CIPHER" "$@" bench-direct) ;;
	B) CMD=($t -F "$WORK/openssh.ssh_config" -c "$CIPHER" "$@" -J bench-jump bench-direct) ;;
	C) CMD=(env "JITPROXY_HOME=$AH" "JITPROXY_PROXY=$PROXY" $t -F "$WORK/c.ssh_config" -c "$CIPHER" "$@" "$LOGIN@demo-ssh") ;;
	D) CMD=($t -F "$WORK/d.ssh_config" -c "$CIPHER" "$@" -J "alice@$BASTION" "$LOGIN@demo-ssh") ;;
	E) CMD=(env "JITPROXY_HOME=$AH" "JITPROXY_PROXY=$PROXY" $t -F "$WORK/e.ssh_config" -c "$CIPHER" "$@" "$LOGIN@demo-ssh") ;;
	esac
}
is_jp() { [ "$1" != A ] && [ "$1" != B ]; }
live() { curl -fsS "$PROXY/metrics" | awk '$1 == "jitproxy_sessions_live{kind=\"ssh\"}" {print $2}'; }
wait_idle() { # until jitproxy has no live session (recordings sealed), at most 60s
	for _ in $(seq 600); do [ "$(live)" = 0 ] && return 0; sleep 0.1; done
	say "warning: jitproxy still has $(live) live sessions"
}
# busy: percent of the machine's CPU time (all cores) not idle over 0.5s.
busy() {
	local a b
	read -r _ u n s i w x y z _ </proc/stat; a=($((u + n + s + i + w + x + y + z)) $((i + w)))
	sleep 0.5
	read -r _ u n s i w x y z _ </proc/stat; b=($((u + n + s + i + w + x + y + z)) $((i + w)))
	echo $((100 * ((b[0] - a[0]) - (b[1] - a[1])) / (b[0] - a[0] + 1)))
}
# wait_quiet: the machine is shared; wait (at most QUIET_WAIT seconds) until
# other work leaves it under QUIET_MAX percent busy, and set BUSY to what it was.
# All the waiting of one run is capped at QUIET_BUDGET seconds, so that a
# busy machine cannot stretch the run much past its usual length.
QUIET_SPENT=0
wait_quiet() {
	local t=$SECONDS
	BUSY=$(busy)
	while [ "$BUSY" -gt "$QUIET_MAX" ] && [ $((SECONDS - t)) -lt "$QUIET_WAIT" ] &&
		[ $((QUIET_SPENT + SECONDS - t)) -lt "$QUIET_BUDGET" ]; do
		BUSY=$(busy)
	done
	QUIET_SPENT=$((QUIET_SPENT + SECONDS - t))
	if [ "$BUSY" -gt "$QUIET_MAX" ]; then say "    (the machine is $BUSY% busy with other work; measuring anyway)"; fi
	return 0
}
# jpcpu: the jitproxy server's user+system CPU time so far, in clock ticks.
jpcpu() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)
drop_recordings() { find "$DATA/recordings" -name '*.cast' -delete 2>/dev/null || true; }
json() { "$PY" -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1" >>"$RESULTS"; }

say "checking each path (and that every hop negotiates $CIPHER)"
head -c 8M /dev/urandom >"$WORK/check.bin"
want=$(sha256sum <"$WORK/check.bin" | cut -d' ' -f1)
for p in $PATHS; do
	path $p
	if ! out=$(timeout 60 "${CMD[@]}" "echo ok" 2>"$WORK/check-$p.err" </dev/null) || [ "$out" != ok ]; then
		FAILED[$p]=$(tr '\n' ' ' <"$WORK/check-$p.err" | sed 's/  */ /g' | cut -c1-300)
		say "  $p ${NAME[$p]}: fails: ${FAILED[$p]}"
		json "$("$PY" -c 'import json,sys; print(json.dumps({"kind":"fail","path":sys.argv[1],"error":sys.argv[2]}))' "$p" "${FAILED[$p]}")"
		continue
	fi
	got=$(timeout 60 "${CMD[@]}" "sha256sum" <"$WORK/check.bin" | cut -d' ' -f1)
	n=$(timeout 60 "${CMD[@]}" "head -c 8M /dev/zero" </dev/null | wc -c)
	path $p -v
	ciphers=$(timeout 60 "${CMD[@]}" true 2>&1 </dev/null | grep -o 'cipher: [^ ]*' | sort | uniq -c | tr '\n' ';' | sed 's/  */ /g')
	say "  $p ${NAME[$p]}: ok; 8 MiB up sha256 $([ "$got" = "$want" ] && echo matches || echo MISMATCH), down $n bytes; $ciphers"
	[ "$got" = "$want" ] && [ "$n" = $((8 << 20)) ] || die "path $p corrupts data"
done
rm -f "$WORK/check.bin"
wait_idle

if [ "$HOLD" = 1 ]; then
	{
		echo "# bench/ssh.sh --hold: source this to reach the running setup by hand."
		echo "WORK=$WORK BIN=$BIN PROXY=$PROXY BASTION=$BASTION SERVER_PID=$SERVER_PID LOGIN=$LOGIN CIPHER=$CIPHER"
		echo "DEMO_PORT=$DEMO_PORT JUMP_PORT=$JUMP_PORT DATA=$DATA AH=$AH"
		echo '# A: ssh -F $WORK/openssh.ssh_config bench-direct    B: ssh -F $WORK/openssh.ssh_config -J bench-jump bench-direct'
		echo '# C: JITPROXY_HOME=$AH ssh -F $WORK/c.ssh_config $LOGIN@demo-ssh    D: ssh -F $WORK/d.ssh_config -J alice@$BASTION $LOGIN@demo-ssh'
	} >"$WORK/env.sh"
	say "holding: source $WORK/env.sh; stop with kill -TERM $$ (or Ctrl-C) to clean up"
	while :; do sleep 1; done
fi

# --- cut latency and memory ------------------------------------------------
cut() { # cut LABEL cut.py-args...
	local label=$1; shift
	local out
	out=$("$PY" "$HERE/cut.py" --jitproxy "$BIN" --proxy "$PROXY" --data "$DATA" --pid "$SERVER_PID" \
		--home "$WORK/home-dave" --approver-home "$WORK/home-bob" --ssh-config "$WORK/dave.ssh_config" \
		--server-log "$WORK/server.log" --login "$LOGIN" --cipher "$CIPHER" --concurrency "$CONCURRENCY" \
		--quiet-max "$QUIET_MAX" --quiet-wait "$QUIET_WAIT" "$@") || true
	[ -n "$out" ] || out='{"error": "cut.py printed nothing"}'
	"$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(kind="cut", label=sys.argv[2]); r.setdefault("n", int(sys.argv[3])); r.setdefault("mode", sys.argv[4]); print(json.dumps(r))' \
		"$out" "$label" "${N:-1}" "${MODE:-revoke}" >>"$RESULTS"
	wait_idle
	sleep 2 # let the sshd children go
}
if [ "$DO_CUT" = 1 ]; then
	first=1
	for N in $SESSIONS; do
		MODE=revoke
		say "cut latency: $N live sessions on one amendment, then jitproxy revoke"
		if [ $first = 1 ]; then
			cut "revoke" --n "$N" --mode revoke --memory
			first=0
		else
			cut "revoke" --n "$N" --mode revoke
		fi
	done
	N=1 MODE=expiry
	say "cut latency: 1 session on a $EXPIRY_FOR amendment, left to expire"
	cut "expiry" --n 1 --mode expiry --expiry-for "$EXPIRY_FOR"
fi

# --- throughput and connection time ------------------------------------------
xfer() { # xfer P up|down ROUND
	local p=$1 dir=$2 r=$3 t0 t1 rc=0 secs err
	if is_jp $p; then wait_idle; fi
	wait_quiet
	path $p
	local c0 c1 mib=$SIZE
	[ "$dir" = down ] && mib=$DOWN
	c0=$(jpcpu)
	t0=$EPOCHREALTIME
	if [ "$dir" = up ]; then
		head -c "${SIZE}M" /dev/zero | timeout 600 "${CMD[@]}" 'cat > /dev/null' 2>"$WORK/xfer.err" || rc=$?
	elif [ "$dir" = down ]; then
		timeout 600 "${CMD[@]}" "head -c ${DOWN}M /dev/zero" >/dev/null 2>"$WORK/xfer.err" </dev/null || rc=$?
	else # text: printable bytes, which an asciicast stores as they are
		timeout 600 "${CMD[@]}" "head -c ${SIZE}M /dev/zero | tr '\\0' x" >/dev/null 2>"$WORK/xfer.err" </dev/null || rc=$?
	fi
	t1=$EPOCHREALTIME
	if is_jp $p; then wait_idle; fi # the recording is sealed: its cost is counted
	c1=$(jpcpu)
	secs=$(calc %.3f "$t1 - $t0")
	if [ $rc = 0 ]; then
		local mibs cpu
		mibs=$(calc %.1f "$mib / ($t1 - $t0)")
		cpu=$(calc %.2f "($c1 - $c0) / $CLK_TCK")
		say "  round $r  $dir  $p ${NAME[$p]}: $mib MiB in ${secs}s = $mibs MiB/s$(is_jp $p && echo "; jitproxy used ${cpu}s of CPU")"
		json "{\"kind\":\"xfer\",\"path\":\"$p\",\"dir\":\"$dir\",\"round\":$r,\"size_mib\":$mib,\"secs\":$secs,\"mibs\":$mibs,\"jp_cpu_s\":$cpu,\"busy_before\":$BUSY,\"ok\":true}"
	else
		err=$(tr '\n"' ' _' <"$WORK/xfer.err" | cut -c1-200)
		say "  round $r  $dir  $p ${NAME[$p]}: FAILED (exit $rc): $err"
		json "{\"kind\":\"xfer\",\"path\":\"$p\",\"dir\":\"$dir\",\"round\":$r,\"ok\":false,\"error\":\"exit $rc: $err\"}"
	fi
	if is_jp $p; then
		if [ "$dir" != up ] && [ "$r" = 1 ]; then
			wait_idle
			local cast
			cast=$(find "$DATA/recordings" -name '*.cast' -printf '%s %p\n' 2>/dev/null | sort -n | tail -1)
			if [ -n "$cast" ]; then
				say "    the recording of that transfer: $(numfmt --to=iec "${cast%% *}")B for $mib MiB of output"
				json "{\"kind\":\"castsize\",\"path\":\"$p\",\"dir\":\"$dir\",\"size_mib\":$mib,\"bytes\":${cast%% *}}"
			fi
		fi
		drop_recordings
	fi
}
conn() { # conn P ROUND: CONN samples of ssh ... true
	local p=$1 r=$2 ms=() t0 t1
	wait_quiet
	path $p
	for _ in $(seq "$CONN"); do
		t0=$EPOCHREALTIME
		timeout 60 "${CMD[@]}" true </dev/null 2>>"$WORK/conn.err" || { say "  conn $p failed: $(tail -1 "$WORK/conn.err")"; continue; }
		t1=$EPOCHREALTIME
		ms+=("$(calc %.2f "($t1 - $t0) * 1000")")
	done
	say "  round $r  conn $p ${NAME[$p]}: ${ms[*]} ms"
	json "{\"kind\":\"conn\",\"path\":\"$p\",\"round\":$r,\"busy_before\":$BUSY,\"ms\":[$(IFS=,; echo "${ms[*]}")]}"
	# The same without the target's login shell (root's ~/.bashrc may be
	# slow): sftp -b /dev/null, the sftp subsystem's handshake and nothing else.
	ms=()
	TOOL=sftp path $p -q -b /dev/null
	for _ in $(seq "$CONN"); do
		t0=$EPOCHREALTIME
		timeout 60 "${CMD[@]}" </dev/null >/dev/null 2>>"$WORK/conn.err" || { say "  sftp $p failed: $(tail -1 "$WORK/conn.err")"; continue; }
		t1=$EPOCHREALTIME
		ms+=("$(calc %.2f "($t1 - $t0) * 1000")")
	done
	say "  round $r  sftp $p ${NAME[$p]}: ${ms[*]} ms"
	json "{\"kind\":\"sftp\",\"path\":\"$p\",\"round\":$r,\"ms\":[$(IFS=,; echo "${ms[*]}")]}"
	if is_jp $p; then drop_recordings; fi
}
if [ "$DO_XFER" = 1 ]; then
	for r in $(seq "$ROUNDS"); do
		say "round $r of $ROUNDS"
		for dir in $DIRS; do
			for p in $PATHS; do [ -n "${FAILED[$p]:-}" ] || xfer $p $dir $r; done
		done
		for p in $PATHS; do [ -n "${FAILED[$p]:-}" ] || conn $p $r; done
	done
fi

# --- profiles ------------------------------------------------------------------
if [ "$PROFILE" = 1 ]; then
	for spec in "C up" "C down" "D down" "C conn"; do
		set -- $spec
		p=$1 what=$2
		[ -n "${FAILED[$p]:-}" ] && continue
		wait_idle
		say "profiling $p $what (perf, whole machine)"
		perf record -q -a -g -F 999 -o "$WORK/perf-$p-$what.data" 2>"$WORK/perf-$p-$what.err" &
		PERF_PID=$!
		sleep 0.5
		path $p
		case $what in
		up) head -c "${SIZE}M" /dev/zero | "${CMD[@]}" 'cat > /dev/null' ;;
		down) "${CMD[@]}" "head -c ${DOWN}M /dev/zero" >/dev/null </dev/null ;;
		conn) for _ in $(seq 20); do "${CMD[@]}" true </dev/null; done ;;
		esac
		wait_idle
		kill -INT $PERF_PID; wait $PERF_PID 2>/dev/null || true
		PERF_PID=""
		perf report -i "$WORK/perf-$p-$what.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12 >"$WORK/perf-$p-$what.comm.txt" || true
		perf report -i "$WORK/perf-$p-$what.data" --no-children --pid "$SERVER_PID" --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 >"$WORK/perf-$p-$what.jitproxy.txt" || true
		drop_recordings
		say "  CPU by process:"; sed 's/^/      /' "$WORK/perf-$p-$what.comm.txt" >&2
		say "  jitproxy's top symbols:"; head -15 "$WORK/perf-$p-$what.jitproxy.txt" | sed 's/^/      /' >&2
	done
fi

# --- the table --------------------------------------------------------------------
say "done in $((SECONDS - START))s; results in $RESULTS"
"$PY" "$HERE/report.py" "$RESULTS" | tee "$WORK/report.txt"
