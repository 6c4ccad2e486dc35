package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSSHFdpass runs stock OpenSSH through the single hop three ways: the
// block ssh-config prints by default (ssh-proxy --fdpass with
// ProxyUseFdpass: the ProxyCommand hands the socket to ssh and is gone),
// the --relay block (ssh-proxy relays for the whole session), and --fdpass
// without ProxyUseFdpass (ssh-proxy says why and relays). Each runs a
// command and keeps exactly the processes its mode should; a refused target
// prints the same one line and exits 255 in all three; scp works through
// fd passing.
func TestSSHFdpass(t *testing.T) {
	_, alice, bob, login := startSSHServer(t)
	bob.ok("approve", idOf(t, alice.ok("request", "demo-ssh", "--login", login, "--for", "1h")))
	alice.ok("certs")

	fdpass := alice.sshConfig(t)
	block, _ := os.ReadFile(fdpass)
	if !strings.Contains(string(block), " ssh-proxy --fdpass ") || !strings.Contains(string(block), "\n    ProxyUseFdpass yes\n") {
		t.Fatalf("ssh-config does not pass the socket by default:\n%s", block)
	}
	relayBlock := alice.ok("ssh-config", "--relay")
	if strings.Contains(relayBlock, "ProxyUseFdpass") || strings.Contains(relayBlock, "--fdpass") {
		t.Fatalf("ssh-config --relay still passes the socket:\n%s", relayBlock)
	}
	relay := filepath.Join(alice.home, "relay_config")
	auto := filepath.Join(alice.home, "auto_config") // --fdpass, but ssh gives a pipe
	os.WriteFile(relay, []byte(relayBlock), 0o600)
	os.WriteFile(auto, []byte(strings.Replace(string(block), "    ProxyUseFdpass yes\n", "", 1)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const refusal = "jitproxy: jitproxy is not an open relay: web-9 is not a jitproxy target; connect to a target by the name jitproxy ssh-config gives it"
	tests := []struct {
		name       string
		config     string
		children   int    // processes ssh keeps during a session: the relaying ssh-proxy
		wantStderr string // what ssh-proxy says on a good connection
	}{
		{name: "fd passing", config: fdpass, children: 0},
		{name: "relay", config: relay, children: 1},
		{name: "fd passing without ProxyUseFdpass", config: auto, children: 1,
			wantStderr: "jitproxy: ssh-proxy --fdpass relays instead: standard output is not a socket (ssh's ProxyUseFdpass is off); add ProxyUseFdpass yes next to the ProxyCommand\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := alice.ssh(ctx, "-F", tt.config, "-o", "BatchMode=yes", login+"@demo-ssh", "echo hello from the target")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil || stdout.String() != "hello from the target\n" || stderr.String() != tt.wantStderr {
				t.Errorf("ssh: %v, stdout %q, stderr %q; want the command's line and stderr %q", err, stdout.String(), stderr.String(), tt.wantStderr)
			}

			// A live session: with fd passing, ssh is alone on the client.
			sess := alice.ssh(ctx, "-F", tt.config, "-o", "BatchMode=yes", login+"@demo-ssh", "echo ready; exec cat >/dev/null")
			var sessErr syncBuffer
			sess.Stderr = &sessErr
			in, _ := sess.StdinPipe()
			out, _ := sess.StdoutPipe()
			if err := sess.Start(); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
				t.Errorf("session: %q, %v; want ready; stderr %q", line, err, sessErr.String())
			}
			if got := childrenOf(t, sess.Process.Pid); len(got) != tt.children {
				t.Errorf("ssh has %d child processes during the session (%v); want %d", len(got), got, tt.children)
			}
			in.Close()
			if err := sess.Wait(); err != nil {
				t.Errorf("session end: %v", err)
			}

			// A refused target: the one line, exit 255.
			stderr.Reset()
			// (HostName, because only the targets' names match the block's Host line.)
			cmd = alice.ssh(ctx, "-F", tt.config, "-o", "BatchMode=yes", "-o", "HostName=web-9", "root@demo-ssh", "true")
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 255 {
				t.Errorf("ssh to web-9: %v; want exit 255", err)
			}
			var ours []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.HasPrefix(l, "jitproxy:") && !strings.Contains(l, "relays instead") {
					ours = append(ours, strings.TrimSuffix(l, "\r"))
				}
			}
			if len(ours) != 1 || ours[0] != refusal {
				t.Errorf("ssh to web-9 printed %q; want the one line %q", stderr.String(), refusal)
			}
		})
	}

	// scp both ways through fd passing.
	dir := t.TempDir()
	data := make([]byte, 3<<20)
	rand.Read(data)
	src, there, back := filepath.Join(dir, "src"), filepath.Join(dir, "there"), filepath.Join(dir, "back")
	os.WriteFile(src, data, 0o600)
	for _, args := range [][]string{{src, login + "@demo-ssh:" + there}, {login + "@demo-ssh:" + there, back}} {
		out, err := alice.scp(ctx, append([]string{"-F", fdpass, "-o", "BatchMode=yes"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("scp %v: %v\n%s", args, err, out)
		}
	}
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Errorf("scp round trip: %d bytes back, %v; want the %d bytes sent", len(got), err, len(data))
	}

	// jitproxy ssh takes the same options, fd passing or --relay.
	for _, args := range [][]string{{"ssh"}, {"ssh", "--relay"}} {
		r := alice.run(append(args, "-o", "BatchMode=yes", login+"@demo-ssh", "echo via jitproxy ssh")...)
		if r.code != 0 || r.stdout != "via jitproxy ssh\n" {
			t.Errorf("jitproxy %v: exit %d, %q, stderr %q; want the command's line", args, r.code, r.stdout, r.stderr)
		}
	}
}

// scp runs OpenSSH's scp as this person.
func (p *person) scp(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "scp", args...)
	cmd.Env = append(os.Environ(), "JITPROXY_HOME="+p.home, "JITPROXY_PROXY="+p.s.url)
	return cmd
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var kids []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, e.Name()+" "+string(b[bytes.IndexByte(b, '(')+1:i]))
		}
	}
	return kids
}
