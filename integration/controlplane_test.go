package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTwoPeople is the control plane end to end, as the people use it: alice
// logs in and asks for access, cannot approve it herself, bob approves, alice
// sees it active, bob revokes, and the audit trail tells all of it and
// verifies, from the server and from the data directory.
func TestTwoPeople(t *testing.T) {
	s := startServer(t)
	alice, bob, carol := s.person("alice"), s.person("bob"), s.person("carol")

	if got := alice.fails("whoami"); !strings.Contains(got, "not logged in: run jitproxy login") {
		t.Errorf("whoami before login: %q; want it to say to log in", got)
	}
	if got := alice.loginBrowser(); !strings.Contains(got, "as Alice <alice@example.com> (groups: eng)") {
		t.Errorf("login: %q", got)
	}
	st, err := os.Stat(alice.home + "/token.json")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	out := alice.ok("request", "web-1", "--login", "ubuntu", "--for", "2h", "--reason", "deploy hotfix")
	id := idOf(t, out)
	if !strings.Contains(out, "requested") || !strings.Contains(out, "ubuntu@web-1") {
		t.Errorf("request: %q", out)
	}
	if got := alice.fails("approve", id); !strings.Contains(got, "you cannot approve your own amendment "+id+": ask someone in sre-leads") {
		t.Errorf("self-approval: %q", got)
	}
	if got := alice.fails("request", "web-1", "--login", "root", "--for", "1h", "--reason", "x"); !strings.Contains(got, `rule "eng-web": target web-1 has no login "root" (it offers ubuntu) (policy_violation)`) {
		t.Errorf("policy violation: %q", got)
	}

	bob.loginBrowser()
	if got := bob.ok("amendments", "--state", "requested", "--all"); !strings.Contains(got, id) || !strings.Contains(got, "alice@example.com") {
		t.Errorf("bob's queue: %q; want alice's request", got)
	}
	if got := bob.ok("approve", id, "--comment", "go ahead"); !strings.Contains(got, "active") {
		t.Errorf("approve: %q", got)
	}
	who := alice.ok("whoami")
	if !regexp.MustCompile(id + `\s+active\s+alice@example.com\s+ubuntu@web-1\s+2h\s+(1h59m|2h)\S* left`).MatchString(who) {
		t.Errorf("whoami: %q; want the active amendment with time left", who)
	}
	if got := bob.ok("revoke", id, "--reason", "hotfix deployed"); !strings.Contains(got, "revoked") {
		t.Errorf("revoke: %q", got)
	}
	if got := alice.ok("show", id); !strings.Contains(got, "by bob@example.com: hotfix deployed") {
		t.Errorf("show: %q", got)
	}

	// Auditors read the trail from the server; others may not.
	carol.loginBrowser()
	if got := alice.fails("audit", "verify"); !strings.Contains(got, "forbidden") {
		t.Errorf("alice audit verify: %q; want forbidden", got)
	}
	if got := carol.fails("revoke", id, "--reason", "x"); !strings.Contains(got, "may not revoke") {
		t.Errorf("auditor revoke: %q; want refused", got)
	}
	remote := carol.ok("audit", "verify")
	local := carol.ok("audit", "verify", "--data", s.data)
	if !strings.HasPrefix(remote, "audit trail intact: ") || remote != local {
		t.Errorf("audit verify: server says %q, data dir says %q; want the same intact head", remote, local)
	}
	var story []string
	sc := bufio.NewScanner(strings.NewReader(carol.ok("audit", "export")))
	for sc.Scan() {
		var e struct{ Type, Actor string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		story = append(story, e.Type+" "+e.Actor)
	}
	want := []string{
		"auth.login alice@example.com",
		"amendment.requested alice@example.com",
		"auth.login bob@example.com",
		"amendment.approved bob@example.com",
		"amendment.activated jitproxy",
		"amendment.revoked bob@example.com",
		"auth.login carol@example.com",
	}
	if strings.Join(story, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit story:\ngot  %q\nwant %q", story, want)
	}

	// Logging out revokes the token on the server, not just here.
	token := readToken(t, alice.home)
	alice.ok("logout")
	if got := alice.fails("whoami"); !strings.Contains(got, "not logged in") {
		t.Errorf("whoami after logout: %q", got)
	}
	writeToken(t, alice.home, token)
	if got := alice.fails("whoami"); !strings.Contains(got, "session token revoked or unknown: run `jitproxy login` again") {
		t.Errorf("reused token after logout: %q; want it refused", got)
	}
}

func readToken(t *testing.T, home string) []byte {
	t.Helper()
	b, err := os.ReadFile(home + "/token.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeToken(t *testing.T, home string, b []byte) {
	t.Helper()
	if err := os.WriteFile(home+"/token.json", b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceLogin logs in with the device grant: the CLI prints a code, the
// person enters it with their credentials on the provider's device page.
func TestDeviceLogin(t *testing.T) {
	s := startServer(t)
	alice := s.person("alice")
	out := alice.login([]string{"--device"}, func(t *testing.T, printed string) {
		m := regexp.MustCompile(`(?s)open this URL in a browser on any device:\n(\S+)\nand enter the code: (\S+)`).FindStringSubmatch(printed)
		if m == nil {
			t.Fatalf("device login printed no URL and code:\n%s", printed)
		}
		b := newBrowser(t)
		p := b.get(m[1])
		p = b.submit(p, map[string]string{"user_code": m[2], "username": "alice", "password": "alice-pw", "action": "approve"})
		if strings.Contains(p.body, "<form") && strings.Contains(p.body, "password") {
			t.Fatalf("device page still asks to sign in:\n%s", p.body)
		}
	})
	if !strings.Contains(out, "as Alice <alice@example.com>") {
		t.Errorf("device login: %q", out)
	}
	if got := alice.ok("whoami"); !strings.Contains(got, "alice@example.com") {
		t.Errorf("whoami after device login: %q", got)
	}
}

// TestRestartExpires stops the server while an amendment is active, waits
// past its expiry, and starts it again: the amendment is expired (by
// jitproxy, with an audit row) before the server answers its first request.
func TestRestartExpires(t *testing.T) {
	s := startServer(t)
	alice := s.person("alice")
	alice.loginBrowser()
	out := alice.ok("request", "app-db", "--role", "app_ro", "--for", "3s")
	id := idOf(t, out)
	if !strings.Contains(out, "active") {
		t.Fatalf("auto-approved request: %q; want active", out)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	time.Sleep(4 * time.Second)
	s.start()
	got := alice.ok("show", id, "--json")
	var a struct {
		State   string `json:"state"`
		EndedBy string `json:"ended_by"`
	}
	if err := json.Unmarshal([]byte(got), &a); err != nil {
		t.Fatal(err)
	}
	if a.State != "expired" || a.EndedBy != "jitproxy" {
		t.Errorf("after restart: state %s ended by %s; want expired by jitproxy", a.State, a.EndedBy)
	}
	export := alice.ok("audit", "export", "--data", s.data)
	if !strings.Contains(export, `"type":"amendment.expired","actor":"jitproxy","amendment":"`) {
		t.Errorf("no expiry audit row in:\n%s", export)
	}
}

// TestGracefulShutdown stops the server with SIGTERM: it exits 0 after
// closing the store cleanly, and starts again on the same data.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t)
	alice := s.person("alice")
	alice.loginBrowser()
	alice.ok("request", "web-1", "--login", "ubuntu", "--for", "1h", "--reason", "before restart")
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: %v; want exit 0", err)
	}
	if !strings.Contains(s.logs.String(), `"message":"stopped"`) {
		t.Errorf("no clean stop in the logs:\n%s", s.logs.String())
	}
	s.start()
	if got := alice.ok("amendments"); !strings.Contains(got, "before restart") && !strings.Contains(got, "ubuntu@web-1") {
		t.Errorf("after restart: %q; want the request still there", got)
	}
	if got := alice.ok("audit", "verify", "--data", s.data); !strings.HasPrefix(got, "audit trail intact") {
		t.Errorf("verify after restart: %q", got)
	}
}

// TestRequestWait blocks `jitproxy request --wait` until an approver decides,
// and says which: approved (exit 0) or denied (exit 2).
func TestRequestWait(t *testing.T) {
	s := startServer(t)
	alice, bob := s.person("alice"), s.person("bob")
	alice.loginBrowser()
	bob.loginBrowser()
	for _, tt := range []struct {
		decide   []string
		wantCode int
		wantOut  string
	}{
		{[]string{"approve"}, 0, "active"},
		{[]string{"deny", "--reason", "not today"}, 2, "was denied"},
	} {
		done := make(chan result, 1)
		go func() {
			done <- alice.run("request", "web-1", "--login", "ubuntu", "--for", "1h", "--reason", "wait for it", "--wait", "--wait-timeout", "45s")
		}()
		var id string
		for deadline := time.Now().Add(20 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var out struct {
				Amendments []struct {
					ShortID string `json:"short_id"`
				} `json:"amendments"`
			}
			json.Unmarshal([]byte(bob.ok("amendments", "--state", "requested", "--all", "--json")), &out)
			if len(out.Amendments) > 0 {
				id = out.Amendments[0].ShortID
			}
		}
		if id == "" {
			t.Fatal("the waiting request never showed up in bob's queue")
		}
		bob.ok(append([]string{tt.decide[0], id}, tt.decide[1:]...)...)
		r := <-done
		if r.code != tt.wantCode || !strings.Contains(r.stdout+r.stderr, tt.wantOut) {
			t.Errorf("after %s: exit %d, output %q; want exit %d mentioning %q", tt.decide[0], r.code, r.stdout+r.stderr, tt.wantCode, tt.wantOut)
		}
	}
}
