package ssh

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/certs"
	"github.com/jitproxy/jitproxy/session"
)

// The test binary doubles as a swarm of x/crypto clients, in a process of
// its own so that their memory and goroutines are not counted as the
// bastion's: TestCutMany runs "<test binary>" with swarmEnv set to
// "addr key cert n".
const swarmEnv = "SSHPROXY_TEST_SWARM"

// manyEnv sets how many sessions TestCutMany opens (default 200), and
// manySFTPEnv makes each an sftp subsystem (sshd's internal-sftp) instead
// of cat: no login shell on the target, whose start-up (root's .bashrc
// here runs pyenv) dominates at 1,000 sessions.
//
//	SSHPROXY_MANY=1000 SSHPROXY_MANY_SFTP=1 GOMAXPROCS=2 go test -run TestCutMany -v ./proxy/ssh/
const (
	manyEnv     = "SSHPROXY_MANY"
	manySFTPEnv = "SSHPROXY_MANY_SFTP"
)

// TestCutMany opens N idle sessions on one amendment (x/crypto clients in
// another process, each running cat with its stdin open, through the
// single hop to the real sshd), reports the bastion's heap, stacks,
// goroutines and RSS per session, then revokes the amendment: every
// session must be cut, and every client must read exactly the one line
// that says why and exit 255. It reports the cut latency the registry
// measures (the revoke's commit to each Cut returning) and when each
// client saw its session end; timings are reported, never asserted. The
// audit rows go to the SQLite store, and the chain must verify after.
func TestCutMany(t *testing.T) {
	n := 200
	if s := os.Getenv(manyEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number", manyEnv, s)
		}
	}
	if raiseNoFile(uint64(4*n+256)) != nil {
		t.Skipf("cannot raise the open-file limit for %d sessions", n)
	}
	timing := &cutTiming{}
	e := newEnv(t, envOptions{quiet: true, maxSessions: n + 1, storeAudit: true, configure: func(c *Config) {
		timing.inner = c.Registry
		c.Registry = timing
	}})
	a := e.grant(e.login, time.Hour, false)

	base := measure()
	sw := startSwarm(t, e, n)
	waitFor(t, func() bool { return e.srv.liveSessions() == n }, "%d sessions live; want %d", e.srv.liveSessions(), n)
	// Every session's cat runs: its exec was answered before the swarm
	// said ready.
	live := measure()
	per := live.sub(base).per(n)
	t.Logf("%d idle sessions: per session %.1f KiB heap in use, %.1f KiB stacks, %.1f KiB RSS, %.2f goroutines",
		n, per.heap/1024, per.stack/1024, per.rss/1024, per.goroutines)

	cpu0 := cpuTime()
	revoked, err := e.svc.Revoke(context.Background(), admin, a.ID, "incident 42")
	if err != nil {
		t.Fatal(err)
	}
	want := "jitproxy: access to " + e.login + "@web-1 ended: amendment " + a.ShortID() + " revoked by root@example.com: incident 42"
	ends := sw.wait(t)
	var seen []time.Duration
	for i, end := range ends {
		// The target's shell may say things of its own first.
		if end.code != 255 || !strings.HasSuffix(end.stderr, "\r\n"+want+"\r\n") || strings.Count(end.stderr, "jitproxy:") != 1 {
			t.Errorf("client %d: exit %d, stderr %q; want 255 and one line %q at the end", i, end.code, end.stderr, want)
		}
		seen = append(seen, end.at.Sub(revoked.EndedAt))
	}
	cuts := timing.latencies(revoked.EndedAt)
	if len(cuts) != n {
		t.Errorf("%d sessions cut; want %d", len(cuts), n)
	}
	t.Logf("cut latency, the proxy's figure (commit to Cut returned): %s", quantiles(cuts))
	t.Logf("commit to each client seeing its session end: %s", quantiles(seen))

	// Their teardown (recordings sealed, audit rows) takes a while under
	// the race detector on a busy machine.
	for deadline := time.Now().Add(time.Minute); e.srv.liveSessions() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still live a minute after the cut", e.srv.liveSessions())
		}
	}
	t.Logf("CPU time of this process from the revoke to every session ended: %.0f µs per session", float64(cpuTime()-cpu0)/1e3/float64(n))
	for _, typ := range []string{"session.cut", "session.end", "recording.sealed"} {
		if got := len(e.audit.find(typ, nil)); got != n {
			t.Errorf("%d %s audit rows; want %d", got, typ, n)
		}
	}
	sum, err := audit.Verify(e.store.AuditEvents(context.Background(), 0))
	if err != nil {
		t.Errorf("the audit chain does not verify: %v", err)
	}
	t.Logf("audit chain: %d events verified", sum.Events)
}

// liveSessions is how many admitted sessions have not ended.
func (s *Server) liveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// cutTiming wraps a Registry to note when each Cut returns.
type cutTiming struct {
	inner Registry
	mu    sync.Mutex // guards done
	done  []time.Time
}

func (c *cutTiming) Register(ctx context.Context, s session.Session) (context.Context, func(string), error) {
	cut := s.Cut
	s.Cut = func(e *session.Ended) {
		cut(e)
		at := time.Now()
		c.mu.Lock()
		c.done = append(c.done, at)
		c.mu.Unlock()
	}
	return c.inner.Register(ctx, s)
}

func (c *cutTiming) latencies(from time.Time) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, len(c.done))
	for i, at := range c.done {
		out[i] = at.Sub(from)
	}
	return out
}

// quantiles formats p50, p99 and max of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	return fmt.Sprintf("p50 %s ms, p99 %s ms, max %s ms (n=%d)", ms(ds[len(ds)/2]), ms(ds[len(ds)*99/100]), ms(ds[len(ds)-1]), len(ds))
}

// usage is the process's memory and goroutines after a GC.
type usage struct{ heap, stack, rss, goroutines float64 }

func measure() usage {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{heap: float64(m.HeapInuse), stack: float64(m.StackInuse), rss: float64(vmRSS()), goroutines: float64(runtime.NumGoroutine())}
}

func (u usage) sub(v usage) usage {
	return usage{u.heap - v.heap, u.stack - v.stack, u.rss - v.rss, u.goroutines - v.goroutines}
}

func (u usage) per(n int) usage {
	f := float64(n)
	return usage{u.heap / f, u.stack / f, u.rss / f, u.goroutines / f}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmRSS is the process's resident set in bytes, or 0 if unknown.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// raiseNoFile raises the soft open-file limit to want, if it is lower.
func raiseNoFile(want uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= want {
		return nil
	}
	if l.Max < want {
		return errors.New("hard limit too low")
	}
	l.Cur = want
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// swarm is the client process.
type swarm struct {
	cmd  *exec.Cmd
	out  *bufio.Scanner
	n    int
	done chan struct{}
}

// swarmEnd is how one client's session ended.
type swarmEnd struct {
	code   int
	stderr string
	at     time.Time
}

// startSwarm starts n clients and returns once every one runs cat.
func startSwarm(t *testing.T, e *env, n int) *swarm {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), swarmEnv+"="+strings.Join([]string{e.addr, e.alice.key, e.alice.cert, e.login, strconv.Itoa(n)}, " "),
		"GOMAXPROCS=1")
	writeFile(t, e.alice.dir+"/host_ca.pub", hostCALines(e.ca), 0o644)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // closed when the test ends: the swarm exits
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	sw := &swarm{cmd: cmd, out: bufio.NewScanner(stdout), n: n}
	sw.out.Buffer(nil, 1<<20)
	ready := make(chan error, 1)
	go func() {
		if !sw.out.Scan() {
			ready <- fmt.Errorf("swarm exited: %v", sw.out.Err())
			return
		}
		if l := sw.out.Text(); l != "ready" {
			ready <- fmt.Errorf("swarm said %q", l)
			return
		}
		ready <- nil
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Duration(n)*100*time.Millisecond + time.Minute):
		t.Fatal("the swarm did not start in time")
	}
	return sw
}

func hostCALines(ca *certs.Authority) []byte {
	var b []byte
	for _, k := range ca.HostCAKeys() {
		b = append(b, gossh.MarshalAuthorizedKey(k)...)
	}
	return b
}

// wait returns how each client's session ended, by client.
func (sw *swarm) wait(t *testing.T) []swarmEnd {
	t.Helper()
	ends := make([]swarmEnd, sw.n)
	got := make(chan error, 1)
	go func() {
		for range sw.n {
			if !sw.out.Scan() {
				got <- fmt.Errorf("swarm exited early: %v", sw.out.Err())
				return
			}
			f := strings.Fields(sw.out.Text())
			if len(f) != 5 || f[0] != "end" {
				got <- fmt.Errorf("swarm said %q", sw.out.Text())
				return
			}
			i, _ := strconv.Atoi(f[1])
			code, _ := strconv.Atoi(f[2])
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			stderr, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(f[4], "-"))
			ends[i] = swarmEnd{code: code, stderr: string(stderr), at: time.Unix(0, ns)}
		}
		got <- nil
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("not every client's session ended within a minute of the revoke")
	}
	return ends
}

// swarmMain runs the client swarm: it opens n sessions running cat, 16
// handshakes at a time, says "ready", then says "end i code unixnano
// base64(stderr)" as each ends, and exits when its stdin closes.
func swarmMain(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 5 {
		fmt.Fprintln(os.Stderr, "swarm: bad spec")
		return 2
	}
	addr, keyFile, certFile, login := f[0], f[1], f[2], f[3]
	n, _ := strconv.Atoi(f[4])
	signer, err := loadCertSigner(keyFile, certFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		return 2
	}
	caBytes, err := os.ReadFile(strings.TrimSuffix(keyFile, "/id_ed25519") + "/host_ca.pub")
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		return 2
	}
	var cas []gossh.PublicKey
	for len(caBytes) > 0 {
		k, _, _, rest, err := gossh.ParseAuthorizedKey(caBytes)
		if err != nil {
			break
		}
		cas = append(cas, k)
		caBytes = rest
	}
	hostKey, err := certs.HostKeyCallback("web-1", nil, cas)
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		return 2
	}
	var (
		out   = bufio.NewWriter(os.Stdout)
		outMu sync.Mutex // guards out
	)
	say := func(s string) {
		outMu.Lock()
		defer outMu.Unlock()
		out.WriteString(s + "\n")
		out.Flush()
	}
	sessions := make([]func() error, n)
	stderrs := make([]*syncBuffer, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var failed error
	var failMu sync.Mutex // guards failed
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, buf, err := swarmSession(addr, login, signer, hostKey)
			if err != nil {
				failMu.Lock()
				failed = fmt.Errorf("client %d: %w", i, err)
				failMu.Unlock()
				return
			}
			sessions[i], stderrs[i] = s, buf
		})
	}
	wg.Wait()
	if failed != nil {
		fmt.Fprintln(os.Stderr, "swarm:", failed)
		return 1
	}
	say("ready")
	for i, s := range sessions {
		go func() {
			err := s()
			at := time.Now()
			code := 0
			var ee *gossh.ExitError
			var se *swarmExit
			switch {
			case errors.As(err, &ee):
				code = ee.ExitStatus()
			case errors.As(err, &se):
				code = se.code
			case err != nil:
				code = -1
			}
			say(fmt.Sprintf("end %d %d %d -%s", i, code, at.UnixNano(), base64.StdEncoding.EncodeToString([]byte(stderrs[i].String()))))
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// swarmSession logs in through the single hop and starts cat with its
// stdin open, or the sftp subsystem; it returns what waits for the end
// (an *gossh.ExitError for an exit status) and the stderr.
func swarmSession(addr, login string, signer gossh.Signer, hostKey gossh.HostKeyCallback) (func() error, *syncBuffer, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if err := WritePreamble(c, "web-1"); err != nil {
		return nil, nil, err
	}
	conn, chans, reqs, err := gossh.NewClientConn(c, "web-1:22", &gossh.ClientConfig{
		User: login, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: hostKey, Timeout: 30 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	client := gossh.NewClient(conn, chans, reqs)
	if os.Getenv(manySFTPEnv) != "" {
		return swarmSFTP(client)
	}
	s, err := client.NewSession()
	if err != nil {
		return nil, nil, err
	}
	buf := &syncBuffer{}
	s.Stderr = buf
	if _, err := s.StdinPipe(); err != nil {
		return nil, nil, err
	}
	if err := s.Start("cat"); err != nil {
		return nil, nil, err
	}
	return s.Wait, buf, nil
}

// swarmSFTP opens a session channel with the sftp subsystem and leaves it
// idle. x/crypto's Session cannot Wait for a subsystem, so this reads the
// channel's requests for the exit status itself.
func swarmSFTP(client *gossh.Client) (func() error, *syncBuffer, error) {
	ch, reqs, err := client.OpenChannel("session", nil)
	if err != nil {
		return nil, nil, err
	}
	ok, err := ch.SendRequest("subsystem", true, gossh.Marshal(struct{ Name string }{"sftp"}))
	if err == nil && !ok {
		err = errors.New("subsystem refused")
	}
	if err != nil {
		return nil, nil, err
	}
	buf := &syncBuffer{}
	stderr := make(chan struct{})
	go func() {
		io.Copy(buf, ch.Stderr())
		close(stderr)
	}()
	go io.Copy(io.Discard, ch)
	return func() error {
		status := -1
		for req := range reqs {
			if req.Type == "exit-status" && len(req.Payload) == 4 {
				status = int(uint32(req.Payload[0])<<24 | uint32(req.Payload[1])<<16 | uint32(req.Payload[2])<<8 | uint32(req.Payload[3]))
			}
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
		<-stderr
		if status < 0 {
			return errors.New("no exit status")
		}
		return &swarmExit{status}
	}, buf, nil
}

// swarmExit is an exit status from swarmSFTP.
type swarmExit struct{ code int }

func (e *swarmExit) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func loadCertSigner(keyFile, certFile string) (gossh.Signer, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := gossh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	certLine, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(certLine)
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		return nil, errors.New("not a certificate")
	}
	return gossh.NewCertSigner(cert, key)
}
