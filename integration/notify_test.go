package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWebhooks configures two webhooks: one that receives, one that hangs.
// The receiving one gets the request and the approval; the hung one slows
// nobody: every CLI command still answers.
func TestWebhooks(t *testing.T) {
	got := make(chan map[string]any, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("webhook body is not JSON: %q", b)
		}
		got <- m
	}))
	defer rcv.Close()
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // never answers while the test runs
	}))
	defer hung.Close()
	defer close(release)

	s := startServer(t, fmt.Sprintf(`
notifications:
  webhooks:
    - {url: %q, format: json, events: [requested, approved, revoked]}
    - {url: %q, format: slack, timeout: 30s}
`, rcv.URL, hung.URL))
	alice, bob := s.person("alice"), s.person("bob")
	alice.loginBrowser()
	bob.loginBrowser()
	id := idOf(t, alice.ok("request", "web-1", "--login", "ubuntu", "--for", "1h", "--reason", "webhook test"))
	bob.ok("approve", id)
	bob.ok("revoke", id, "--reason", "done")

	want := []string{"amendment.requested", "amendment.approved", "amendment.revoked"}
	for _, ev := range want {
		select {
		case m := <-got:
			if m["event"] != ev {
				t.Errorf("webhook got event %v; want %s", m["event"], ev)
			}
			a, _ := m["amendment"].(map[string]any)
			if a == nil || !strings.HasPrefix(fmt.Sprint(a["id"]), id) {
				t.Errorf("webhook payload names amendment %v; want %s", a, id)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("webhook never received %s", ev)
		}
	}
	// Shutdown does not wait for the hung webhook either.
	if err := s.stop(); err != nil {
		t.Errorf("stop with a hung webhook: %v", err)
	}
}
