package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitproxy/jitproxy/recording"
)

// TestPsql runs stock psql through the proxy to each kind of upstream:
// verify-full TLS with SCRAM, no TLS with SCRAM, and a client certificate.
func TestPsql(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name           string
		target, role   string
		dbname, sql    string
		want           string
		wantUser       string
		wantEncryption string
	}{
		{name: "verify-full scram", target: "app-db", role: "app_ro", dbname: "app-db/app", sql: "select 1", want: "1"},
		{name: "default database", target: "app-db", role: "app_ro", dbname: "app-db", sql: "select current_database()", want: "app"},
		{name: "injected role", target: "app-db", role: "app_ro", dbname: "app-db/app", sql: "select current_user", want: "app_ro"},
		{name: "upstream tls", target: "app-db", role: "app_ro", dbname: "app-db/app", sql: "select ssl from pg_stat_ssl where pid = pg_backend_pid()", want: "t"},
		{name: "application name", target: "app-db", role: "app_ro", dbname: "app-db/app", sql: "show application_name", want: "jitproxy/alice@example.com"},
		{name: "no upstream tls", target: "plain-db", role: "app_rw", dbname: "plain-db/app", sql: "select ssl from pg_stat_ssl where pid = pg_backend_pid()", want: "f"},
		{name: "client certificate", target: "cert-db", role: "app_cert", dbname: "cert-db/app", sql: "select current_user || ' ' || count(*) from items", want: "app_cert 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.grant(t, alice, tt.target, tt.role, "", false, time.Hour)
			out, stderr, err := f.psql(t, f.connString(alice.Email, tt.dbname, "require"), f.token(t, alice, a), "", "-At", "-c", tt.sql)
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, stderr)
			}
			if got := strings.TrimSpace(out); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestPsqlScript drives an interactive-style psql session from stdin and
// checks what it printed and what the recording holds.
func TestPsqlScript(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	script := `\set ON_ERROR_STOP 0
select count(*) from items;
select name from items where id = 3;
begin;
select 1/0;
rollback;
select 'a' as x \gset
\echo got :x
insert into items (name) values ('nope');
\echo done
`
	out, stderr, err := f.psql(t, f.connString(alice.Email, "app-db/app", "require"), f.token(t, alice, a), script, "-At")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, stderr)
	}
	for _, want := range []string{"100\n", "item 3\n", "got a\n", "done\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout %q lacks %q", out, want)
		}
	}
	for _, want := range []string{"division by zero", "permission denied for table items"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}

	stmts := f.statements(t, alice.Key())
	type row struct {
		kind, sql, err string
		rows           int64
	}
	var got []row
	for _, s := range stmts {
		got = append(got, row{s.Kind, s.SQL, s.Error, s.Rows})
	}
	want := []row{
		{"query", "select count(*) from items;", "", 1},
		{"query", "select name from items where id = 3;", "", 1},
		{"query", "begin;", "", 0},
		{"query", "select 1/0;", "22012", 0},
		{"query", "rollback;", "", 0},
		{"query", "select 'a' as x ", "", 1},
		{"query", "insert into items (name) values ('nope');", "42501", 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded\n%v\nwant\n%v", got, want)
	}
	for _, s := range stmts {
		if s.Time.IsZero() || s.Duration < 0 {
			t.Errorf("statement %q: time %v, duration %v", s.SQL, s.Time, s.Duration)
		}
	}

	// One session: started, ended when psql hung up, its recording sealed
	// with the SHA-256 of the file as written.
	waitFor(t, 5*time.Second, "the session.end audit row", func() bool { return len(f.audit.find("session.end")) > 0 })
	starts, ends, sealed := f.audit.find("session.start"), f.audit.find("session.end"), f.audit.find("recording.sealed")
	if len(starts) != 1 || len(ends) != 1 || len(sealed) != 1 {
		t.Fatalf("audit rows: %d session.start, %d session.end, %d recording.sealed; want one each", len(starts), len(ends), len(sealed))
	}
	for _, r := range []auditRow{starts[0], ends[0], sealed[0]} {
		if r.actor != alice.Key() || r.fields["amendment"] != a.ID || r.fields["session"] != starts[0].fields["session"] ||
			r.fields["role"] != "app_ro" || r.fields["database"] != "app" || r.fields["target"] != "app-db" {
			t.Errorf("audit row %s: actor %s, fields %v", r.typ, r.actor, r.fields)
		}
	}
	if ends[0].fields["reason"] != "client closed" || ends[0].fields["cut"] != false {
		t.Errorf("session.end %v; want reason client closed, not cut", ends[0].fields)
	}
	metas, err := recording.Find(f.recDir, starts[0].fields["session"].(string))
	if err != nil || len(metas) != 1 {
		t.Fatalf("recordings of the session: %v, %v", metas, err)
	}
	if err := recording.VerifyFile(metas[0]); err != nil || sealed[0].fields["sha256"] != metas[0].SHA256 || metas[0].SHA256 == "" {
		t.Errorf("sealed %v; recording %+v, verify %v", sealed[0].fields, metas[0], err)
	}
}

// TestDirectTLS connects as libpq 17's sslnegotiation=direct does: TLS
// from the first byte, with ALPN.
func TestDirectTLS(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	cfg, err := pgx.ParseConfig(f.connString(alice.Email, "app-db/app", "require") + " sslnegotiation=direct")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = f.token(t, alice, a)
	c, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	var one int
	if err := c.QueryRow(t.Context(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("got %d, %v; want 1", one, err)
	}
}

// TestProtocolNegotiation connects a client that asks for protocol 3.2:
// the proxy says it speaks 3.0, and the session works.
func TestProtocolNegotiation(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	cfg, err := pgx.ParseConfig(f.connString(alice.Email, "app-db/app", "require") + " max_protocol_version=3.2")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = f.token(t, alice, a)
	c, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	var n int
	if err := c.QueryRow(t.Context(), "select count(*) from items").Scan(&n); err != nil || n != 100 {
		t.Errorf("got %d, %v; want 100", n, err)
	}
	if len(c.PgConn().SecretKey()) != 4 {
		t.Errorf("secret key of %d bytes; want protocol 3.0's 4", len(c.PgConn().SecretKey()))
	}
}

// TestExtendedProtocol runs pgx (extended protocol, parameters, prepared
// statements, a batch) through the proxy and checks the recording, with
// parameter values recorded.
func TestExtendedProtocol(t *testing.T) {
	f := newFixture(t, func(c *pgproxyConfig) { c.RecordParameters = true })
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	c := f.mustConnect(t, alice.Email, "app-db/app", f.token(t, alice, a))
	ctx := context.Background()

	var price string
	if err := c.QueryRow(ctx, "select price::text from items where name = $1", "item 7").Scan(&price); err != nil {
		t.Fatal(err)
	}
	if price != "10.5" {
		t.Errorf("price %q; want 10.5", price)
	}
	if _, err := c.Prepare(ctx, "byname", "select id from items where name = $1"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		var id int
		if err := c.QueryRow(ctx, "byname", fmt.Sprintf("item %d", i)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id != i {
			t.Errorf("id %d; want %d", id, i)
		}
	}
	b := &pgx.Batch{}
	b.Queue("select count(*) from items where name like $1", "item 1%")
	b.Queue("select nosuchcolumn from items")
	err := c.SendBatch(ctx, b).Close()
	if code := pgError(err).Code; code != "42703" {
		t.Errorf("batch error %v; want SQLSTATE 42703", err)
	}
	rows, err := c.Query(ctx, "select id from items where id <= $1", 25)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n != 25 {
		t.Errorf("rows %d, %v; want 25", n, rows.Err())
	}
	c.Close(ctx)

	stmts := f.statements(t, alice.Key())
	var executes []recording.Statement
	for _, s := range stmts {
		if s.Kind == recording.StatementExecute {
			executes = append(executes, s)
		}
	}
	want := []struct {
		sql    string
		values string
		rows   int64
	}{
		{"select price::text from items where name = $1", "[item 7]", 1},
		{"select id from items where name = $1", "[item 1]", 1},
		{"select id from items where name = $1", "[item 2]", 1},
		{"select id from items where name = $1", "[item 3]", 1},
		{"select id from items where id <= $1", "[\\x00000019]", 25},
	}
	var got []string
	for _, s := range executes {
		got = append(got, fmt.Sprintf("%s %v %d", s.SQL, s.Values, s.Rows))
	}
	var wantS []string
	for _, w := range want {
		wantS = append(wantS, fmt.Sprintf("%s %s %d", w.sql, w.values, w.rows))
	}
	// The batch's statements may or may not be recorded as executes
	// (pgx describes them first); everything else in order.
	if !containsInOrder(got, wantS) {
		t.Errorf("executes recorded\n%s\nwant in order\n%s", strings.Join(got, "\n"), strings.Join(wantS, "\n"))
	}
	var sawError bool
	for _, s := range stmts {
		if s.Error == "42703" && strings.Contains(s.SQL, "nosuchcolumn") {
			sawError = true
		}
	}
	if !sawError {
		t.Errorf("no statement recorded the batch's 42703; got %+v", stmts)
	}
}

// containsInOrder reports whether want is a subsequence of got.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestCopy copies 10 MB in and out through the proxy, byte for byte.
func TestCopy(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_rw", "app", false, time.Hour)
	c := f.mustConnect(t, alice.Email, "app-db/app", f.token(t, alice, a))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "delete from blobs"); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	rows := 0
	for in.Len() < 10<<20 {
		line := make([]byte, 500)
		for i := range line {
			line[i] = 'a' + byte((rows*7+i*13)%26)
		}
		fmt.Fprintf(&in, "%d\t%s\n", rows, line)
		rows++
	}
	wantSum := sha256.Sum256(in.Bytes())
	tag, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(in.Bytes()), "copy blobs from stdin")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != int64(rows) {
		t.Errorf("copied in %d rows; want %d", tag.RowsAffected(), rows)
	}
	h := sha256.New()
	tag, err = c.PgConn().CopyTo(ctx, h, "copy (select * from blobs order by id) to stdout")
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, wantSum[:]) {
		t.Errorf("copied out sha256 %s; want %s", hex.EncodeToString(got), hex.EncodeToString(wantSum[:]))
	}
	c.Close(ctx)

	var copies []recording.Statement
	for _, s := range f.statements(t, alice.Key()) {
		if s.Kind == recording.StatementCopy {
			copies = append(copies, s)
		}
	}
	wantMsg := fmt.Sprintf("%d bytes copied", in.Len())
	if len(copies) != 2 || copies[0].Rows != int64(rows) || copies[1].Rows != int64(rows) || copies[0].Message != wantMsg || copies[1].Message != wantMsg {
		t.Errorf("copies recorded %+v; want two of %d rows, %q", copies, rows, wantMsg)
	}
}

// TestListenNotify delivers a notification through the proxy.
func TestListenNotify(t *testing.T) {
	f := newFixture(t)
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	tok := f.token(t, alice, a)
	listener := f.mustConnect(t, alice.Email, "app-db/app", tok)
	notifier := f.mustConnect(t, alice.Email, "app-db/app", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := listener.Exec(ctx, "listen jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, "select pg_notify('jobs', 'job 42 done')"); err != nil {
		t.Fatal(err)
	}
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "jobs" || n.Payload != "job 42 done" {
		t.Errorf("notification %q %q; want jobs, job 42 done", n.Channel, n.Payload)
	}
}

// TestLargeRows returns rows larger than the relay's buffer and than
// MaxMessageBytes.
func TestLargeRows(t *testing.T) {
	f := newFixture(t, func(c *pgproxyConfig) { c.MaxMessageBytes = 64 << 10 })
	a := f.grant(t, alice, "app-db", "app_ro", "app", false, time.Hour)
	c := f.mustConnect(t, alice.Email, "app-db/app", f.token(t, alice, a))
	var s string
	if err := c.QueryRow(context.Background(), "select repeat('x', 3000000) || $1::text", "!").Scan(&s); err != nil {
		t.Fatal(err)
	}
	if len(s) != 3000001 || !strings.HasSuffix(s, "x!") {
		t.Errorf("got %d bytes ending %q; want 3000001 ending x!", len(s), s[max(0, len(s)-2):])
	}
	// A query bigger than the relay buffer (but within the limit).
	q := "select length('" + strings.Repeat("y", 200000) + "')"
	var n int
	if err := c.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 200000 {
		t.Errorf("length %d; want 200000", n)
	}
}

// BenchmarkQuery compares a query's round trip straight to PostgreSQL
// with one through the proxy (TLS on each leg, the session recorded).
func BenchmarkQuery(b *testing.B) {
	f := newFixture(b)
	a := f.grant(b, alice, "app-db", "app_ro", "app", false, time.Hour)
	direct := fmt.Sprintf("host=127.0.0.1 port=%d user=app_ro dbname=app sslmode=verify-full sslrootcert=%s password=%s", f.pg.port, f.pg.caFile, roPassword)
	for _, bc := range []struct{ name, conn, password string }{
		{"direct", direct, roPassword},
		{"proxy", f.connString(alice.Email, "app-db/app", "require"), f.token(b, alice, a)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg, err := pgx.ParseConfig(bc.conn)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Password = bc.password
			c, err := pgx.ConnectConfig(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(context.Background())
			ctx := context.Background()
			var name string
			for b.Loop() {
				if err := c.QueryRow(ctx, "select name from items where id = $1", 42).Scan(&name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
