package postgres_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/recording"
)

// TestNoSecrets runs sessions that succeed, are refused and are cut, and
// checks that no role password and no token reached the logs, the audit
// rows, the recordings or psql's output.
func TestNoSecrets(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	tok := f.token(t, alice, a)
	conn := f.connString(alice.Email, "app-db/app", "require")
	var seen strings.Builder
	for _, run := range []struct{ token, sql string }{
		{tok, "select current_user"},
		{tok + "x", "select 1"},
		{tok[:len(tok)-4], "select 1"},
		{"jpdb_" + strings.Repeat("A", 300), "select 1"},
	} {
		out, stderr, _ := f.psql(t, conn, run.token, "", "-c", run.sql)
		seen.WriteString(out + stderr)
	}
	if _, err := f.am.Revoke(t.Context(), bob, a.ID, "rotation"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the recording sealed", func() bool { return len(f.audit.find("recording.sealed")) > 0 })
	seen.WriteString(f.logs.String())
	for _, r := range f.audit.rows {
		fmt.Fprintf(&seen, "%s %s %v\n", r.typ, r.actor, r.fields)
	}
	filepath.Walk(f.recDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			seen.Write(b)
			if r, err := recording.Open(p); err == nil { // a compressed recording's plain text
				io.Copy(&seen, r)
				r.Close()
			}
		}
		return nil
	})
	all := seen.String()
	if !strings.Contains(all, "session started") || !strings.Contains(all, "select current_user") {
		t.Fatalf("the logs and recordings saw nothing; the test checks nothing")
	}
	for name, secret := range map[string]string{"app_ro's password": roPassword, "app_rw's password": rwPassword, "the token": tok, "the token's MAC": tok[len(tok)-20:]} {
		if strings.Contains(all, secret) {
			t.Errorf("%s leaked", name)
		}
	}
}
