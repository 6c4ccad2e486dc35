package ssh

import (
	"strings"
	"testing"
	"time"
)

// TestRefusals checks the one line a person sees in ssh's stderr for each
// way jitproxy says no, on the way in that meets it.
func TestRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.grant(e.login, time.Hour, false)
	now := time.Now()
	var (
		eve     = e.newClient("eve", "eve@example.com", e.ca, now.Add(time.Hour))
		expired = e.newClient("expired", alice.Email, newAuthority(t, e.dir, func() time.Time { return now.Add(-2 * time.Hour) }), now.Add(-time.Hour))
		foreign = e.newClient("foreign", alice.Email, newAuthority(t, t.TempDir(), nil), now.Add(time.Hour))
		plain   = e.newClient("plain", alice.Email, nil, time.Time{})
	)
	host := func(login string) string { return login + "@web-1" }
	at := func(h string) string { return e.login + "@" + h }
	notTarget := func(name string) string {
		return "jitproxy is not an open relay: " + name + " is not a jitproxy target; connect to a target by the name jitproxy ssh-config gives it"
	}
	_, port, _ := strings.Cut(e.addr, ":")
	badPreamble := "jitproxy: this is the jitproxy SSH bastion: connect with ssh -J or the block jitproxy ssh-config prints"
	tests := []struct {
		name string
		c    *client
		jump bool
		env  []string
		args []string
		want string // a whole line of ssh's stderr
	}{
		{"no amendment", eve, false, nil, []string{host(e.login)},
			"jitproxy: no active amendment for " + host(e.login) + ": run jitproxy request web-1 --login " + e.login + " --for 1h --reason ..."},
		{"no amendment via -J", eve, true, nil, []string{"-J", e.jumpArg(), host(e.login)},
			"jitproxy: no active amendment for " + host(e.login) + ": run jitproxy request web-1 --login " + e.login + " --for 1h --reason ..."},
		{"wrong login", e.alice, false, nil, []string{host("nobody")},
			"jitproxy: no active amendment for nobody@web-1: run jitproxy request web-1 --login nobody --for 1h --reason ..."},
		{"expired certificate", expired, false, nil, []string{host(e.login)}, "jitproxy: certificate expired: run jitproxy login"},
		{"expired certificate at the bastion", expired, true, nil, []string{"-J", e.jumpArg(), host(e.login)}, "jitproxy: certificate expired: run jitproxy login"},
		{"certificate from another CA", foreign, false, nil, []string{host(e.login)}, "jitproxy: certificate not signed by this jitproxy's user CA: run jitproxy login"},
		{"plain key", plain, false, nil, []string{host(e.login)}, "jitproxy: only jitproxy certificates are accepted: run jitproxy login"},
		{"plain key at the bastion", plain, true, nil, []string{"-J", e.jumpArg(), host(e.login)}, "jitproxy: only jitproxy certificates are accepted: run jitproxy login"},
		{"unknown target via -J", e.alice, true, nil, []string{"-J", e.jumpArg(), at("web-9")},
			"channel 0: open failed: administratively prohibited: " + notTarget("web-9")},
		{"address via -J", e.alice, true, nil, []string{"-J", e.jumpArg(), "-p", "8080", at("10.1.2.3")},
			"channel 0: open failed: administratively prohibited: " + notTarget("10.1.2.3")},
		{"other port via -J", e.alice, true, nil, []string{"-J", e.jumpArg(), "-p", "2200", at("web-1")},
			"channel 0: open failed: administratively prohibited: jitproxy is not an open relay: connect to web-1 on port 22, not 2200"},
		{"unknown target via the preamble", e.alice, false, nil, []string{at("web-9")}, notTarget("web-9")},
		{"garbage preamble", e.alice, false, []string{rawProxyEnv + "=GET / HTTP/1.1"}, []string{host(e.login)}, badPreamble},
		{"preamble too long", e.alice, false, []string{rawProxyEnv + "=" + PreambleTarget + strings.Repeat("w", MaxPreambleLine)}, []string{host(e.login)}, badPreamble},
		{"another person on the inner hop", e.alice, false, nil,
			[]string{"-o", "ProxyCommand=ssh -F " + eve.jump + " -W [%h]:%p -p " + port + " " + e.login + "@127.0.0.1", host(e.login)},
			"jitproxy: the certificate for alice@example.com is not the one you logged in to the bastion with (eve@example.com): use one jitproxy certificate for both hops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.runEnv(tt.jump, tt.env, "", "ssh", append(tt.args, "echo should-not-run")...)
			t.Logf("ssh stderr:\n%s", r.stderr)
			if r.code != 255 {
				t.Errorf("exit code %d; want 255", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q; want nothing", r.stdout)
			}
			if !hasLine(r.stderr, tt.want) {
				t.Errorf("stderr:\n%s\nwant the line:\n%s", r.stderr, tt.want)
			}
		})
	}
}

// hasLine reports whether out has want as a whole line (CR and LF both
// end lines, as a terminal shows them).
func hasLine(out, want string) bool {
	for _, l := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l == want {
			return true
		}
	}
	return false
}
