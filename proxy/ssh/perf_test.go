package ssh

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/certs"
)

// perfEnv turns on TestThroughputOpenSSH: SSHPROXY_PERF=MiB to move.
const perfEnv = "SSHPROXY_PERF"

// TestThroughputOpenSSH compares real OpenSSH throughput straight to sshd
// with the same through the bastion (single hop and -J), uploading to
// `cat >/dev/null` and downloading from `head -c`. It runs only when
// SSHPROXY_PERF is set (to the MiB to move); run it without -race:
//
//	SSHPROXY_PERF=512 go test -run TestThroughputOpenSSH -v ./proxy/ssh/
func TestThroughputOpenSSH(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv(perfEnv))
	if mib <= 0 {
		t.Skip("set " + perfEnv + "=MiB to measure OpenSSH throughput through the bastion")
	}
	e := newEnv(t, envOptions{quiet: true, configure: func(c *Config) {
		if os.Getenv("SSHPROXY_PERF_NORECORD") != "" {
			c.Recorder, c.RequireRecording = nil, false
		}
	}})
	e.grant(e.login, time.Hour, false)
	direct := e.directClient(t)
	n := int64(mib) << 20
	tests := []struct {
		name string
		c    *client
		jump bool
		env  []string
		args []string
	}{
		{"direct", direct, true, nil, []string{"-p", e.sshd.port(), e.login + "@127.0.0.1"}},
		{"single hop", e.alice, false, nil, []string{e.login + "@web-1"}},
		{"ssh -J", e.alice, true, nil, []string{"-J", e.jumpArg(), e.login + "@web-1"}},
	}
	// Shared cores make single runs noisy: each case runs three times,
	// interleaved with the others, and the best counts.
	best := map[string]float64{}
	for round := 0; round < 3; round++ {
		for _, dir := range []string{"upload", "download"} {
			for _, tt := range tests {
				rate := e.transfer(t, tt.c, tt.jump, tt.env, tt.args, dir, n)
				best[dir+"/"+tt.name] = max(best[dir+"/"+tt.name], rate)
			}
		}
	}
	for _, dir := range []string{"upload", "download"} {
		for _, tt := range tests {
			rate := best[dir+"/"+tt.name]
			t.Logf("%-8s %-22s %7.1f MiB/s  %.2fx direct", dir, tt.name, rate, rate/best[dir+"/direct"])
		}
	}
}

// transfer moves n bytes with ssh args (upload: into cat >/dev/null;
// download: from head -c) and returns the rate in MiB/s.
func (e *env) transfer(t *testing.T, c *client, jump bool, env, args []string, dir string, n int64) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	remote := "cat >/dev/null"
	if dir == "download" {
		remote = "head -c " + strconv.FormatInt(n, 10) + " /dev/zero | tr '\\0' x"
	}
	if ciphers := os.Getenv("SSHPROXY_PERF_CIPHERS"); ciphers != "" {
		args = append([]string{"-o", "Ciphers=" + ciphers}, args...)
	}
	cmd := c.command(ctx, jump, env, "ssh", append(args, remote)...)
	var got int64
	start := time.Now()
	if dir == "upload" {
		stdin, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, _ = io.CopyN(stdin, zeros{}, n)
		stdin.Close()
	} else {
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, _ = io.Copy(io.Discard, stdout)
	}
	err := cmd.Wait()
	d := time.Since(start)
	if err != nil || got != n {
		t.Fatalf("%s %v: %d bytes, %v", dir, args, got, err)
	}
	return float64(n) / d.Seconds() / (1 << 20)
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// directClient is a client that logs in to sshd itself, as the baseline:
// a certificate for the login from the same user CA, and sshd's host key
// pinned.
func (e *env) directClient(t *testing.T) *client {
	t.Helper()
	c := e.newClient("direct", "direct", e.ca, time.Now().Add(time.Hour))
	// Re-sign for the login as principal, which sshd checks.
	key, err := os.ReadFile(c.key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := e.ca.SignUser(signer.PublicKey(), certs.UserCert{KeyID: "direct", Principals: []string{e.login}, ValidBefore: time.Now().Add(time.Hour), PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.cert, gossh.MarshalAuthorizedKey(cert), 0o644)
	kh := filepath.Join(c.dir, "known_hosts")
	writeFile(t, kh, []byte("[127.0.0.1]:"+e.sshd.port()+" "+strings.TrimSpace(string(gossh.MarshalAuthorizedKey(e.sshd.hostKey)))+"\n"), 0o644)
	return c
}

func (s *sshd) port() string {
	_, p, _ := strings.Cut(s.addr, ":")
	return p
}
