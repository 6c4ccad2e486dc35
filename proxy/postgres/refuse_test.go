package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
)

// TestRefusals turns connections away before a byte reaches the target,
// each with the SQLSTATE a client can branch on and a line that says what
// to do, as pgx reports it and as psql prints it.
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	anyDB := f.grant(t, alice, "plain-db", "app_ro", "", false, time.Hour)
	evesA := f.grant(t, eve, "app-db", "app_ro", "app", false, time.Hour)
	revoked := f.grant(t, eve, "plain-db", "app_ro", "app", false, time.Hour)
	if _, err := f.am.Revoke(t.Context(), bob, revoked.ID, "done"); err != nil {
		t.Fatal(err)
	}
	past, err := certs.NewTokenIssuer(certs.TokenConfig{Key: f.key, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := past.Issue(certs.Token{Person: alice.Key(), Amendment: a.ID, Target: "app-db", ExpiresAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wrongName := f.grant(t, alice, "wrongname-db", "app_ro", "app", false, time.Hour)
	wrongCA := f.grant(t, alice, "wrongca-db", "app_ro", "app", false, time.Hour)
	noSuchAmendment, err := f.tokens.Issue(certs.Token{Person: eve.Key(), Amendment: "0123456789abcdef", Target: "plain-db", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		person   string
		dbname   string
		sslmode  string
		token    string
		wantCode string
		want     string // in the message
		// wantPsql is what psql prints instead, when libpq refuses first.
		wantPsql string
	}{
		{name: "no token", person: alice.Email, dbname: "app-db/app", token: "",
			wantCode: "28P01", want: "jitproxy: no database token: get one with jitproxy db-token app-db", wantPsql: "no password supplied"},
		{name: "wrong token", person: alice.Email, dbname: "app-db/app", token: "jpdb_AAAAnotatoken",
			wantCode: "28P01", want: "jitproxy: database token invalid: run jitproxy db-token app-db"},
		{name: "expired token", person: alice.Email, dbname: "app-db/app", token: expired,
			wantCode: "28P01", want: "jitproxy: database token expired: run jitproxy db-token app-db"},
		{name: "another target's token", person: alice.Email, dbname: "app-db/app", token: f.token(t, alice, anyDB),
			wantCode: "28P01", want: "jitproxy: database token was issued for another target: run jitproxy db-token app-db"},
		{name: "another person's token", person: alice.Email, dbname: "app-db/app", token: f.token(t, eve, evesA),
			wantCode: "28P01", want: "jitproxy: database token was issued to another person (the user must be your own jitproxy identity): run jitproxy db-token app-db"},
		{name: "no tls", person: alice.Email, dbname: "app-db/app", sslmode: "disable", token: f.token(t, alice, a),
			wantCode: "28000", want: "jitproxy: the jitproxy PostgreSQL endpoint requires TLS, so that your database token never crosses the network in the clear: connect with sslmode=require"},
		{name: "unknown target", person: alice.Email, dbname: "nope-db/app", token: f.token(t, alice, a),
			wantCode: "28000", want: `jitproxy: "nope-db" is not a jitproxy PostgreSQL target: set dbname to TARGET or TARGET/DATABASE`},
		{name: "database not granted", person: alice.Email, dbname: "app-db/postgres", token: f.token(t, alice, a),
			wantCode: "28000", want: "jitproxy: no active amendment for ROLE@app-db/postgres: run jitproxy request app-db --role ROLE --database postgres --for 1h --reason ..."},
		{name: "database not served", person: alice.Email, dbname: "plain-db/template1", token: f.token(t, alice, anyDB),
			wantCode: "28000", want: "jitproxy: target plain-db serves no database template1 through jitproxy (it serves app, nosuchdb)"},
		{name: "database missing upstream", person: alice.Email, dbname: "plain-db/nosuchdb", token: f.token(t, alice, anyDB),
			wantCode: "3D000", want: `jitproxy: plain-db refused the session: database "nosuchdb" does not exist`},
		{name: "server certificate for another name", person: alice.Email, dbname: "wrongname-db/app", token: f.token(t, alice, wrongName),
			wantCode: "08004", want: "jitproxy: jitproxy could not log in to wrongname-db as app_ro: try again, or give the jitproxy admins session "},
		{name: "server certificate from another CA", person: alice.Email, dbname: "wrongca-db/app", token: f.token(t, alice, wrongCA),
			wantCode: "08004", want: "jitproxy: jitproxy could not log in to wrongca-db as app_ro: try again, or give the jitproxy admins session "},
		{name: "no amendment", person: eve.Email, dbname: "plain-db/app", token: noSuchAmendment,
			wantCode: "28000", want: "jitproxy: no active amendment for ROLE@plain-db/app: run jitproxy request plain-db --role ROLE --database app --for 1h --reason ..."},
		{name: "revoked amendment", person: eve.Email, dbname: "plain-db/app", token: f.token(t, eve, revoked),
			wantCode: "28000", want: "jitproxy: no active amendment for ROLE@plain-db/app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sslmode := tt.sslmode
			if sslmode == "" {
				sslmode = "require"
			}
			conn := f.connString(tt.person, tt.dbname, sslmode)

			cfg, err := pgconn.ParseConfig(conn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Password = tt.token
			c, err := pgconn.ConnectConfig(t.Context(), cfg)
			if err == nil {
				c.Close(t.Context())
			}
			pe := pgError(err)
			if pe.Code != tt.wantCode || pe.Severity != "FATAL" || !strings.HasPrefix(pe.Message, tt.want) {
				t.Errorf("pgx: %v (%s %s %q); want FATAL %s %q", err, pe.Severity, pe.Code, pe.Message, tt.wantCode, tt.want)
			}

			_, stderr, err := f.psql(t, conn, tt.token, "", "-c", "select 1")
			want := tt.want
			if tt.wantPsql != "" {
				want = tt.wantPsql
			} else {
				want = "FATAL:  " + want
			}
			if err == nil || !strings.Contains(stderr, want) {
				t.Errorf("psql: %v, stderr %q; want %q", err, stderr, want)
			}
		})
	}
	if n := len(f.audit.find("session.refused")); n < len(tests) {
		t.Errorf("%d session.refused audit rows; want at least %d", n, len(tests))
	}
	if n := len(f.audit.find("session.start")); n != 0 {
		t.Errorf("%d sessions started; want none", n)
	}
}

// TestTwoAmendments connects with each of two amendments a person holds on
// one target: each token reaches its own role.
func TestTwoAmendments(t *testing.T) {
	f := newFixture(t)
	ro := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	rw := f.grant(t, alice, "app-db", "app_rw", "app", false, 2*time.Hour)
	tests := []struct {
		name string
		a    *amendment.Amendment
		want string
	}{
		{"shorter", ro, "app_ro"},
		{"longer", rw, "app_rw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := f.psql(t, f.connString(alice.Email, "app-db/app", "require"), f.token(t, alice, tt.a), "", "-At", "-c", "select current_user")
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, stderr)
			}
			if got := strings.TrimSpace(out); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}
