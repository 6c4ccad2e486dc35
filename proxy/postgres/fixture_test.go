package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
	pgproxy "github.com/jitproxy/jitproxy/proxy/postgres"
	"github.com/jitproxy/jitproxy/recording"
	"github.com/jitproxy/jitproxy/session"
	"github.com/jitproxy/jitproxy/store"
)

var (
	alice = amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	eve   = amendment.Identity{Email: "eve@example.com", Groups: []string{"eng"}}
	bob   = amendment.Identity{Email: "bob@example.com", Groups: []string{"admins"}}
)

// pgproxyConfig is the proxy's Config, for fixture edits.
type pgproxyConfig = pgproxy.Config

// testContract lets engineers request any role on the PostgreSQL targets,
// approved by policy.
func testContract() *amendment.Contract {
	return &amendment.Contract{
		Targets: map[string]amendment.Target{
			"app-db":   {Name: "app-db", Kind: amendment.KindPostgres},
			"plain-db": {Name: "plain-db", Kind: amendment.KindPostgres},
			"cert-db":  {Name: "cert-db", Kind: amendment.KindPostgres},
			// Targets whose server the proxy must not trust.
			"wrongname-db": {Name: "wrongname-db", Kind: amendment.KindPostgres},
			"wrongca-db":   {Name: "wrongca-db", Kind: amendment.KindPostgres},
		},
		Rules: []amendment.Rule{{
			Name: "eng-db", Groups: []string{"eng"}, Targets: []string{"*"}, Roles: []string{"*"}, Databases: []string{"*"},
			MaxDuration: 8 * time.Hour, PendingTTL: time.Hour,
		}},
		AdminGroups: []string{"admins"},
	}
}

// access is the Access the command wires: the amendment service's live
// check, with the refusal people read.
type access struct{ am *amendment.Service }

func (a access) ActivePostgres(ctx context.Context, person, target, role, database string) (*amendment.Amendment, error) {
	want := amendment.Resource{Kind: amendment.KindPostgres, Target: target, Role: role, Database: database}
	if role == "" {
		want.Role = "ROLE"
	}
	hint := fmt.Sprintf("no active amendment for %s: run jitproxy request %s --role %s", want, target, want.Role)
	if database != "" {
		hint += " --database " + database
	}
	hint += " --for 1h --reason ..."
	return a.am.ActiveFor(ctx, person, target, func(r amendment.Resource) bool {
		return r.Kind == amendment.KindPostgres && (role == "" || r.Role == role) &&
			(database == "" || r.Database == "" || r.Database == database)
	}, hint)
}

// auditLog collects the proxy's audit rows.
type auditLog struct {
	mu   sync.Mutex // guards rows
	rows []auditRow
}

type auditRow struct {
	typ, actor string
	fields     map[string]any
}

func (l *auditLog) add(_ context.Context, typ, actor string, fields map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = append(l.rows, auditRow{typ, actor, fields})
}

// find returns the rows of type typ.
func (l *auditLog) find(typ string) []auditRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []auditRow
	for _, r := range l.rows {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

// fixture is a proxy in front of the shared PostgreSQL, with the real
// amendment service, SQLite store, session registry, token issuer and
// recorder behind it.
type fixture struct {
	pg     *pgServer
	srv    *pgproxy.Server
	addr   string // the proxy's 127.0.0.1:port
	port   string
	am     *amendment.Service
	reg    *session.Registry
	tokens *certs.TokenIssuer
	key    []byte
	recDir string
	audit  *auditLog
	logs   *syncBuffer // everything the proxy logged, at debug level
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newFixture starts a proxy; edit adjusts its Config before New.
func newFixture(t testing.TB, edit ...func(*pgproxy.Config)) *fixture {
	t.Helper()
	pg := postgresServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.OpenSQLite(ctx, store.SQLiteConfig{Path: filepath.Join(t.TempDir(), "jitproxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	am, err := amendment.New(amendment.Config{Store: st, Contract: testContract()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := session.New(session.Config{Amendments: st})
	if err != nil {
		t.Fatal(err)
	}
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		reg.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-regDone
	})
	key := make([]byte, 32)
	rand.Read(key)
	tokens, err := certs.NewTokenIssuer(certs.TokenConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	recDir := t.TempDir()
	rec, err := recording.New(recording.Config{Dir: recDir, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pg: pg, am: am, reg: reg, tokens: tokens, key: key, recDir: recDir, audit: &auditLog{}, logs: &syncBuffer{}}
	password := func(pw string) func() (string, error) { return func() (string, error) { return pw, nil } }
	roles := map[string]pgproxy.Role{
		"app_ro": {Name: "app_ro", Password: password(roPassword)},
		"app_rw": {Name: "app_rw", Password: password(rwPassword)},
	}
	cfg := pgproxy.Config{
		TLS:    selfSignedTLS(t),
		Tokens: tokens,
		Targets: map[string]pgproxy.Target{
			"app-db": {Name: "app-db", Address: pg.addr, Databases: []string{"app"}, Roles: roles,
				TLS: pgproxy.UpstreamTLS{Mode: "verify-full", CAFile: pg.caFile}},
			"plain-db": {Name: "plain-db", Address: pg.addr, Databases: []string{"app", "nosuchdb"}, Roles: roles,
				TLS: pgproxy.UpstreamTLS{Mode: "disable"}},
			"cert-db": {Name: "cert-db", Address: pg.addr, Databases: []string{"app"},
				Roles: map[string]pgproxy.Role{"app_cert": {Name: "app_cert"}},
				TLS:   pgproxy.UpstreamTLS{Mode: "verify-full", CAFile: pg.caFile, CertFile: pg.certFile, KeyFile: pg.keyFile}},
			"wrongname-db": {Name: "wrongname-db", Address: pg.addr, Roles: roles,
				TLS: pgproxy.UpstreamTLS{Mode: "verify-full", CAFile: pg.caFile, ServerName: "db.example.com"}},
			"wrongca-db": {Name: "wrongca-db", Address: pg.addr, Roles: roles,
				TLS: pgproxy.UpstreamTLS{Mode: "verify-ca", CAFile: otherCA(t)}},
		},
		Access:           access{am},
		Registry:         reg,
		Recorder:         rec,
		RequireRecording: true,
		Audit:            f.audit.add,
		Logger:           zerolog.New(f.logs).Level(zerolog.DebugLevel),
	}
	for _, e := range edit {
		e(&cfg)
	}
	srv, err := pgproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", f.logs)
		}
	})
	f.srv, f.addr = srv, ln.Addr().String()
	_, f.port, _ = net.SplitHostPort(f.addr)
	return f
}

// grant has who request role (and database) on target for d, approved by
// policy, and returns the active amendment.
func (f *fixture) grant(t testing.TB, who amendment.Identity, target, role, database string, readOnly bool, d time.Duration) *amendment.Amendment {
	t.Helper()
	a, err := f.am.Request(context.Background(), who, amendment.Request{
		Target: target, Role: role, Database: database, ReadOnly: readOnly, Duration: d, Reason: "testing the proxy",
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.State != amendment.Active {
		t.Fatalf("amendment %s is %s; want active", a.ID, a.State)
	}
	return a
}

// token issues a DB token for who on a's target.
func (f *fixture) token(t testing.TB, who amendment.Identity, a *amendment.Amendment) string {
	t.Helper()
	tok, err := f.tokens.Issue(certs.Token{Person: who.Key(), Amendment: a.ID, Target: a.Resource.Target, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// connString is a libpq connection string to the proxy.
func (f *fixture) connString(person, dbname, sslmode string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%s user=%s dbname=%s sslmode=%s connect_timeout=10", f.port, person, dbname, sslmode)
}

// psqlCmd returns a psql command connected to the proxy with password.
func (f *fixture) psqlCmd(ctx context.Context, conn, password string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "psql", append([]string{"-X", "-w", "-v", "ON_ERROR_STOP=1", conn}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=/nonexistent", "PGCONNECT_TIMEOUT=10"}
	if password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
	}
	return cmd
}

// psql runs psql with args against the proxy and returns its stdout and
// stderr.
func (f *fixture) psql(t testing.TB, conn, password, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := f.psqlCmd(ctx, conn, password, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err = cmd.Run()
	return o.String(), e.String(), err
}

// connect opens a pgx connection through the proxy.
func (f *fixture) connect(t testing.TB, person, dbname, password string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.connString(person, dbname, "require"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

// mustConnect is connect that fails the test on error.
func (f *fixture) mustConnect(t testing.TB, person, dbname, password string) *pgx.Conn {
	t.Helper()
	c, err := f.connect(t, person, dbname, password)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	return c
}

// statements reads the query logs recorded for person, once sealed,
// oldest first.
func (f *fixture) statements(t testing.TB, person string) []recording.Statement {
	t.Helper()
	return f.recorded(t, func(m recording.Meta) bool { return m.Person == person })
}

// statementsOf reads the query logs of the sessions on amendment id, once
// sealed, oldest first.
func (f *fixture) statementsOf(t testing.TB, id string) []recording.Statement {
	t.Helper()
	return f.recorded(t, func(m recording.Meta) bool { return m.Amendment == id })
}

func (f *fixture) recorded(t testing.TB, match func(recording.Meta) bool) []recording.Statement {
	t.Helper()
	var metas []recording.Meta
	waitFor(t, 10*time.Second, "a sealed recording", func() bool {
		all, err := recording.List(f.recDir)
		if err != nil {
			t.Fatal(err)
		}
		metas = slices.DeleteFunc(all, func(m recording.Meta) bool { return !match(m) || m.State == recording.StateOpen })
		return len(metas) > 0
	})
	slices.SortFunc(metas, func(a, b recording.Meta) int { return a.Start.Compare(b.Start) })
	var out []recording.Statement
	for _, m := range metas {
		out = append(out, readStatements(t, m)...)
	}
	return out
}

func readStatements(t testing.TB, m recording.Meta) []recording.Statement {
	t.Helper()
	data, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	_, seq := recording.ReadQueryLog(bytes.NewReader(data))
	var out []recording.Statement
	for s, err := range seq {
		if err != nil {
			t.Fatalf("read %s: %v", m.Path, err)
		}
		out = append(out, s)
	}
	return out
}

// pgError returns err as a *pgconn.PgError, or a zero one.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return &pgconn.PgError{}
}

// otherCA writes a CA certificate that signed nothing the server has.
func otherCA(t testing.TB) string {
	t.Helper()
	ca, _, err := newCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := writePEM(path, "CERTIFICATE", ca.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
