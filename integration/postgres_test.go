package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needPostgres(t *testing.T) {
	t.Helper()
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(m) == 0 {
		t.Skip("PostgreSQL's server is not installed; ./scripts/test.sh installs postgresql")
	}
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed; ./scripts/test.sh installs postgresql-client")
	}
}

// TestPostgresEndToEnd is the PostgreSQL path as people use it: request,
// approval, then stock psql through `jitproxy psql` on the demo database;
// the statements are recorded and sealed; a revoke cuts a running query
// with a FATAL line that says why.
func TestPostgresEndToEnd(t *testing.T) {
	needPostgres(t)
	s := startServerWith(t, serverOptions{postgres: true})
	alice, bob := s.person("alice"), s.person("bob")
	alice.loginBrowser()
	bob.loginBrowser()

	if got := alice.fails("db-token", "demo-db"); !strings.Contains(got, "no active amendment for a database role on demo-db") {
		t.Errorf("db-token before any amendment: %q", got)
	}
	id := idOf(t, alice.ok("request", "demo-db", "--role", "app_rw", "--for", "1h"))
	bob.ok("approve", id)

	if got := alice.ok("psql", "demo-db", "--", "-Atc", "select count(*) from orders"); strings.TrimSpace(got) != "20" {
		t.Errorf("psql through jitproxy: %q; want 20 demo orders", got)
	}
	env := alice.ok("db-env", "demo-db")
	for _, want := range []string{"PGHOST=127.0.0.1", "PGUSER=alice@example.com", "PGDATABASE=demo-db/app", "PGSSLMODE=require", "PGPASSWORD=jpdb_"} {
		if !strings.Contains(env, want) {
			t.Errorf("db-env lacks %q:\n%s", want, env)
		}
	}

	// A running query, cut by a revoke.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "psql", "demo-db", "--", "-c", "select pg_sleep(30)")
	cmd.Env = append(os.Environ(), "JITPROXY_HOME="+alice.home, "JITPROXY_PROXY="+s.url)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the query start
	bob.ok("revoke", id, "--reason", "incident 7")
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("psql still running 15s after the revoke: %s", out.String())
	}
	want := "jitproxy: access to app_rw@demo-db/app ended: amendment " + id + " revoked by bob@example.com: incident 7"
	if !strings.Contains(out.String(), want) {
		t.Errorf("psql printed:\n%s\nwant the line %q", out.String(), want)
	}
	t.Logf("psql ended %v after the revoke returned", time.Since(start))
	if got := alice.fails("db-token", "demo-db"); !strings.Contains(got, "no active amendment") {
		t.Errorf("db-token after the revoke: %q", got)
	}

	// Both sessions were recorded, statement by statement, and sealed.
	var recs []struct {
		ID        string `json:"id"`
		Kind      string `json:"kind"`
		EndReason string `json:"end_reason"`
		SHA256    string `json:"sha256"`
		Path      string `json:"path"`
	}
	if err := json.Unmarshal([]byte(alice.ok("recordings", "--data", s.data, "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	export := alice.ok("audit", "export", "--data", s.data)
	var sawCount, sawCut bool
	for _, r := range recs {
		// Stored compressed by default: export gives the plain JSON lines.
		b := alice.ok("recordings", "export", r.ID, "--data", s.data)
		sawCount = sawCount || strings.Contains(b, "select count(*) from orders")
		sawCut = sawCut || strings.Contains(r.EndReason, "revoked by bob@example.com")
		if r.SHA256 == "" || !strings.Contains(export, r.SHA256) {
			t.Errorf("recording %s: hash %q not sealed in the audit trail", r.Path, r.SHA256)
		}
	}
	if len(recs) != 2 || !sawCount || !sawCut {
		t.Errorf("%d recordings (want 2), statement recorded %v, cut recorded %v", len(recs), sawCount, sawCut)
	}
}
