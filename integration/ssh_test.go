package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshClient runs the real OpenSSH client as a person, with the ssh-config
// block jitproxy printed for them.
func (p *person) sshConfig(t *testing.T) string {
	t.Helper()
	block := p.ok("ssh-config")
	path := filepath.Join(p.home, "ssh_config")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *person) ssh(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Env = append(os.Environ(), "JITPROXY_HOME="+p.home, "JITPROXY_PROXY="+p.s.url)
	return cmd
}

func needSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("OpenSSH's server is not installed; ./scripts/test.sh installs openssh-server")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("OpenSSH's client is not installed; ./scripts/test.sh installs it")
	}
}

// TestSSHEndToEnd is the SSH path as people use it: request, approval,
// certificate, then stock ssh (single hop and -J) runs commands on a real
// sshd; the session is recorded and sealed in the audit trail; a revoke cuts
// a live interactive session with one clear line; old certificates then
// reach nothing.
func TestSSHEndToEnd(t *testing.T) {
	s, alice, bob, login := startSSHServer(t)

	if got := alice.fails("certs"); !strings.Contains(got, "no active SSH amendment, so no certificate") {
		t.Errorf("certs before any amendment: %q", got)
	}
	id := idOf(t, alice.ok("request", "demo-ssh", "--login", login, "--for", "1h"))
	bob.ok("approve", id)
	if got := alice.ok("certs"); !strings.Contains(got, "SSH certificate for alice@example.com valid until") {
		t.Errorf("certs: %q", got)
	}
	cfg := alice.sshConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Single hop, through the block ssh-config printed.
	out, err := alice.ssh(ctx, "-F", cfg, "-o", "BatchMode=yes", login+"@demo-ssh", "echo hello from the target; id -un").CombinedOutput()
	if err != nil || string(out) != "hello from the target\n"+login+"\n" {
		t.Fatalf("single-hop ssh: %v\n%s", err, out)
	}
	// Input and its EOF reach the command, however fast the client sends
	// them after the exec request (an EOF that overtook the exec used to
	// leave `ssh host cat </dev/null` hanging).
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		cat := alice.ssh(c, "-F", cfg, "-o", "BatchMode=yes", login+"@demo-ssh", "cat")
		if i%2 == 1 {
			cat.Stdin = strings.NewReader("through cat\n")
		} // else stdin is /dev/null: EOF at once
		out, err := cat.CombinedOutput()
		cancel()
		want := map[bool]string{false: "", true: "through cat\n"}[i%2 == 1]
		if err != nil || string(out) != want {
			t.Fatalf("ssh … cat, try %d: %v, %q; want %q promptly", i, err, out, want)
		}
	}
	// ssh -J through the bastion, with nothing but the certificate: ssh
	// passes no -o options to the jump connection, so they go in a file.
	h := alice.home
	jcfg := filepath.Join(h, "jump_config")
	os.WriteFile(jcfg, []byte("Host *\n  IdentityFile "+filepath.Join(h, "id_ed25519")+"\n  CertificateFile "+filepath.Join(h, "id_ed25519-cert.pub")+
		"\n  IdentitiesOnly yes\n  UserKnownHostsFile "+filepath.Join(h, "known_hosts")+"\n  StrictHostKeyChecking yes\n  BatchMode yes\n"), 0o600)
	out, err = alice.ssh(ctx, "-F", jcfg, "-J", "alice@"+s.sshAddr, login+"@demo-ssh", "echo via the jump host").CombinedOutput()
	if err != nil || string(out) != "via the jump host\n" {
		t.Errorf("ssh -J: %v\n%s", err, out)
	}
	// Not an open relay: the ssh-config block's Host pattern matches
	// demo-ssh, so HostName sends an unknown name through the same path
	// (plain "root@web-9" would fail earlier, in ssh's own DNS lookup).
	out, _ = alice.ssh(ctx, "-F", cfg, "-o", "BatchMode=yes", "-o", "HostName=web-9", "root@demo-ssh", "true").CombinedOutput()
	if !strings.Contains(string(out), "jitproxy: jitproxy is not an open relay: web-9 is not a jitproxy target") {
		t.Errorf("unknown target: %s; want the bastion's refusal naming it", out)
	}
	// Nor through -J to an arbitrary host:port.
	out, err = alice.ssh(ctx, "-F", jcfg, "-J", "alice@"+s.sshAddr, "-p", "22", "root@127.0.0.1", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "open failed: administratively prohibited: jitproxy is not an open relay: 127.0.0.1 is not a jitproxy target") {
		t.Errorf("ssh -J to 127.0.0.1:22: %v: %s; want the bastion to refuse the forward", err, out)
	}

	// An interactive session, cut by a revoke.
	sess := alice.ssh(ctx, "-F", cfg, "-tt", login+"@demo-ssh")
	stdin, _ := sess.StdinPipe()
	var stdout, stderr syncBuffer // exec writes while waitFor reads
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "echo started-$((6*7))\n")
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(stdout.String()+stderr.String(), "started-42") }, "the interactive session to start")
	bob.ok("revoke", id, "--reason", "incident 42")
	exited := make(chan error, 1)
	go func() { exited <- sess.Wait() }()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		sess.Process.Kill()
		t.Fatalf("ssh still running 15s after the revoke\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}
	want := "jitproxy: access to " + login + "@demo-ssh ended: amendment " + id + " revoked by bob@example.com: incident 42"
	if !strings.Contains(stdout.String()+stderr.String(), want) {
		t.Errorf("the person did not see why:\nstdout: %q\nstderr: %q\nwant: %q", stdout.String(), stderr.String(), want)
	}

	// After the revoke the old certificate reaches nothing, and no new one
	// is minted.
	out, err = alice.ssh(ctx, "-F", cfg, "-o", "BatchMode=yes", login+"@demo-ssh", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no active amendment") {
		t.Errorf("ssh after revoke: %v\n%s; want refused with no active amendment", err, out)
	}
	if got := alice.fails("certs"); !strings.Contains(got, "no active SSH amendment") {
		t.Errorf("certs after revoke: %q", got)
	}

	// Every session was recorded; the hashes match the audit trail.
	var recs []struct {
		ID        string `json:"id"`
		EndReason string `json:"end_reason"`
		SHA256    string `json:"sha256"`
		Path      string `json:"path"`
	}
	raw := alice.ok("recordings", "--data", s.data, "--json")
	if err := json.Unmarshal([]byte(raw), &recs); err != nil {
		t.Fatalf("recordings --json: %v\n%s", err, raw)
	}
	if len(recs) < 8 {
		t.Fatalf("%d recordings; want one per session (8)\n%s", len(recs), raw)
	}
	export := alice.ok("audit", "export", "--data", s.data)
	var cut bool
	for _, r := range recs {
		b, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != r.SHA256 || !strings.Contains(export, r.SHA256) {
			t.Errorf("recording %s: file hash %x, sealed %s, in the audit trail: %v", r.ID, sum, r.SHA256, strings.Contains(export, r.SHA256))
		}
		if strings.Contains(r.EndReason, "revoked by bob@example.com") {
			cut = true
			// Stored compressed by default; export gives the plain cast
			// that asciinema play reads.
			if got := alice.ok("recordings", "export", r.ID, "--data", s.data); !strings.HasPrefix(got, `{"version":2`) || !strings.Contains(got, "started-42") {
				t.Errorf("recordings export %s: %.200q; want the plain asciicast with the session's output", r.ID, got)
			}
		}
	}
	if !cut {
		t.Errorf("no recording says it ended with the revoke: %s", raw)
	}
	if _, err := exec.LookPath("asciinema"); err == nil {
		for _, r := range recs {
			if strings.Contains(r.EndReason, "revoked") {
				// asciinema cat needs a terminal: our recording package's
				// own test runs it under a pty; here the file must parse.
				if got := alice.ok("replay", strings.SplitN(r.ID, "-", 2)[0], "--data", s.data, "--speed", "100"); !strings.Contains(got, "started-42") {
					t.Errorf("replay of %s: %q; want the session's output", r.ID, got)
				}
			}
		}
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSSHServer starts jitproxy with its demo sshd and signs in alice and
// bob; login is the demo sshd's one login (it runs as us).
func startSSHServer(t *testing.T) (s *server, alice, bob *person, login string) {
	t.Helper()
	needSSHD(t)
	s = startServerWith(t, serverOptions{ssh: true})
	alice, bob = s.person("alice"), s.person("bob")
	alice.loginBrowser()
	bob.loginBrowser()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return s, alice, bob, u.Username
}
