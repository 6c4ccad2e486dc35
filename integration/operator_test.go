package integration

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // to tamper with the store's file directly, as an attacker would
)

// TestAuditVerifyTampered builds a real trail through the server, stops it,
// then edits, deletes, inserts and reorders rows in the SQLite file itself:
// `jitproxy audit verify --data` exits 1 and names the first bad row.
func TestAuditVerifyTampered(t *testing.T) {
	s := startServer(t)
	alice, bob := s.person("alice"), s.person("bob")
	alice.loginBrowser()
	bob.loginBrowser()
	for range 2 {
		id := idOf(t, alice.ok("request", "web-1", "--login", "ubuntu", "--for", "1h", "--reason", "trail"))
		bob.ok("approve", id)
		bob.ok("revoke", id, "--reason", "done")
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	intact := alice.ok("audit", "verify", "--data", s.data)
	if !strings.HasPrefix(intact, "audit trail intact: 10 events, head 10:") {
		t.Fatalf("before tampering: %q; want 10 intact events", intact)
	}
	head := strings.TrimSpace(strings.TrimPrefix(intact[strings.Index(intact, "head ")+5:], ""))

	db := filepath.Join(s.data, "jitproxy.db")
	pristine, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sql  string
		want string
	}{
		{"edit a reason", `UPDATE audit SET data = replace(data, 'done', 'nothing') WHERE seq = 6`,
			"audit trail broken at row 6 (seq 6): hash does not match its contents: the row was edited"},
		{"edit an actor", `UPDATE audit SET actor = 'mallory@example.com' WHERE seq = 4`,
			"audit trail broken at row 4 (seq 4): hash does not match its contents: the row was edited"},
		{"delete a row", `DELETE FROM audit WHERE seq = 5`,
			"audit trail broken at row 5 (seq 6): sequence number 6 where 5 was expected: row 5 is missing"},
		{"insert a forged row", `INSERT INTO audit (seq, time, type, actor, amendment, session, data, prev_hash, hash)
			SELECT 100, time, type, 'mallory@example.com', amendment, session, data, prev_hash, hash FROM audit WHERE seq = 3;
			UPDATE audit SET seq = seq + 1000 WHERE seq >= 4 AND seq < 100;
			UPDATE audit SET seq = 4 WHERE seq = 100;
			UPDATE audit SET seq = seq - 999 WHERE seq >= 1000`,
			"audit trail broken at row 4 (seq 4): prev_hash does not match the hash of the row before"},
		{"reorder two rows", `UPDATE audit SET seq = 100 WHERE seq = 7; UPDATE audit SET seq = 7 WHERE seq = 8; UPDATE audit SET seq = 8 WHERE seq = 100`,
			"audit trail broken at row 7 (seq 7): prev_hash does not match the hash of the row before"},
		{"cut the last row", `DELETE FROM audit WHERE seq = 10`,
			"audit trail does not contain the expected head " + head},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(db, pristine, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Remove(db + "-wal")
			os.Remove(db + "-shm")
			tamper(t, db, tt.sql)
			stderr := alice.fails("audit", "verify", "--data", s.data, "--expect-head", head)
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("verify said:\n%s\nwant it to contain:\n%s", stderr, tt.want)
			}
		})
	}
}

// tamper runs statements against the store's file, first dropping the
// append-only triggers the way someone with write access to the file could.
func tamper(t *testing.T, path, stmts string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, tr := range triggers {
		if _, err := db.Exec(fmt.Sprintf(`DROP TRIGGER %q`, tr)); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range strings.Split(stmts, ";") {
		if strings.TrimSpace(st) == "" {
			continue
		}
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}

// TestConfigCheck runs `jitproxy config check` on the shipped files and on a
// broken one: every error with its line and field path, exit 1.
func TestConfigCheck(t *testing.T) {
	p := &person{t: t, s: &server{}, name: "operator", home: t.TempDir()}
	for _, f := range []string{"../configs/dev.yaml", "../configs/jitproxy.example.yaml"} {
		if got := p.ok("config", "check", "--config", f); !strings.Contains(got, ": ok: ") {
			t.Errorf("%s: %q; want ok with a summary", f, got)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`server:
  api_listen: 127.0.0.1:8080
  colour: blue
oidc:
  issuer: http://127.0.0.1:8080/dev-idp
  client_id: x
targets:
  ssh:
    - {name: web-1, address: "127.0.0.1:22", host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}
    - {name: web-1, address: "127.0.0.1:23", host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}
contract:
  rules:
    - name: r1
      who: {groups: [eng]}
      targets: [mail-1]
      logins: [ubuntu]
      max_duration: 10y
      approvals: {count: 0}
`), 0o600)
	r := p.run("config", "check", "--config", bad)
	if r.code != 1 {
		t.Fatalf("exit %d; want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		bad + `:3: server: unknown field "colour"`,
		bad + `:10: targets.ssh[1].name: duplicate target name "web-1"`,
		bad + `:15: contract.rules[0].targets[0]: `,
		bad + `:17: contract.rules[0].max_duration: bad duration "10y"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "error(s)") {
		t.Errorf("stderr %q; want the error count", r.stderr)
	}
}
