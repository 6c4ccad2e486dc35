package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func pgMeta() PGMeta {
	return PGMeta{Session: "p7", Person: "alice@example.com", Role: "app_ro", Database: "app", Target: "app-db", Amendment: "a1b2"}
}

// statements is a small session: simple and extended protocol, an error,
// a COPY.
func statements() []Statement {
	return []Statement{
		{Time: t0.Add(time.Second), Kind: StatementQuery, SQL: "SELECT count(*) FROM users WHERE name = 'O''Brien'", Rows: 1, Duration: 1500 * time.Microsecond},
		{Time: t0.Add(2 * time.Second), Kind: StatementParse, SQL: "SELECT * FROM orders WHERE id = $1 AND note = $2", Params: 2},
		{Time: t0.Add(2*time.Second + time.Millisecond), Kind: StatementBind, SQL: "SELECT * FROM orders WHERE id = $1 AND note = $2", Params: 2,
			Values: []string{"42", "tab\there \"quoted\" é"}},
		{Time: t0.Add(2*time.Second + 2*time.Millisecond), Kind: StatementExecute, SQL: "SELECT * FROM orders WHERE id = $1 AND note = $2", Params: 2,
			Rows: 3, Duration: 12345678 * time.Nanosecond},
		{Time: t0.Add(3 * time.Second), Kind: StatementQuery, SQL: "SELECT * FROM nope;\n-- bad \xff byte", Duration: 250 * time.Microsecond,
			Error: "42P01", Message: `relation "nope" does not exist`},
		{Time: t0.Add(4 * time.Second), Kind: StatementCopy, SQL: "COPY users TO STDOUT", Rows: 1000, Duration: 2 * time.Second},
	}
}

func TestQueryLogGolden(t *testing.T) {
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) { testQueryLogGolden(t, comp) })
	}
}

func testQueryLogGolden(t *testing.T, comp Compression) {
	r, clk := newRecorder(t, Config{Compression: comp})
	q, err := r.StartPostgres(pgMeta())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statements() {
		q.Log(s)
	}
	clk.Advance(5 * time.Second)
	q.Log(Statement{Kind: StatementQuery, SQL: "SELECT now()", Rows: 1}) // Time from Now
	clk.Advance(time.Second)
	m, err := q.Close("revoked by bob@example.com: incident over")
	if err != nil {
		t.Fatal(err)
	}
	plain := readPlain(t, m.Path)
	checkLines(t, plain)
	golden(t, "postgres.jsonl", plain)
	want := filepath.Join(r.dir, "2026", "11", "29", "p7.jsonl")
	if comp == CompressionNone {
		golden(t, "postgres.jsonl.meta.json", readFile(t, m.Path+sidecarSuffix))
	} else {
		want += ".zst"
	}
	if m.Path != want {
		t.Errorf("path: got %s; want %s", m.Path, want)
	}
	b := readFile(t, m.Path)
	sum := sha256.Sum256(b)
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(len(b)) || m.State != StateClosed {
		t.Errorf("got %+v; want closed with sha256 %x of %d bytes", m, sum, len(b))
	}
	if err := VerifyFile(m); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}
	q.Log(Statement{Kind: StatementQuery, SQL: "late"})
	if m2, err := q.Close("again"); err != nil || m2.SHA256 != m.SHA256 {
		t.Errorf("second Close: got %+v, %v; want the first result", m2, err)
	}
	if !equalBytes(readFile(t, m.Path), b) {
		t.Error("file changed after Close")
	}
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

func TestQueryLogRead(t *testing.T) {
	r, _ := newRecorder(t, Config{})
	q, err := r.StartPostgres(pgMeta())
	if err != nil {
		t.Fatal(err)
	}
	want := statements()
	for _, s := range want {
		q.Log(s)
	}
	m, err := q.Close("client closed")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, seq := ReadQueryLog(f)
	wantH := QueryLogHeader{Type: "header", Version: 1, ID: "p7", Session: "p7", Person: "alice@example.com", Role: "app_ro",
		Database: "app", Target: "app-db", Amendment: "a1b2", Start: t0}
	if fmt.Sprint(h) != fmt.Sprint(wantH) {
		t.Errorf("header: got %+v; want %+v", h, wantH)
	}
	var got []Statement
	for s, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	want[4].SQL = "SELECT * FROM nope;\n-- bad \ufffd byte"
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestQueryLogTruncated(t *testing.T) {
	r, _ := newRecorder(t, Config{Compression: CompressionNone})
	q, err := r.StartPostgres(pgMeta())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statements()[:2] {
		q.Log(s)
	}
	m, err := q.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, m.Path)
	cut := append(b, `{"type":"statement","time":"2026-11-29T12:00:09Z","kind":"que`...)
	if err := os.WriteFile(m.Path, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, seq := ReadQueryLog(f)
	n := 0
	var last error
	for _, err := range seq {
		if err != nil {
			last = err
			break
		}
		n++
	}
	if n != 2 || !errors.Is(last, ErrTruncated) {
		t.Errorf("got %d statements, then %v; want 2, then ErrTruncated", n, last)
	}
}

func TestQueryLogNoAllocs(t *testing.T) {
	r, _ := newRecorder(t, Config{})
	q, err := r.StartPostgres(pgMeta())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close("test over")
	s := statements()[2]
	q.Log(s)
	if got := testing.AllocsPerRun(200, func() { q.Log(s) }); got != 0 {
		t.Errorf("got %v allocations per Log; want 0", got)
	}
}

// writeSizes is a file that remembers the size of every write after the
// header: with CompressionNone, each is one frame's content.
type writeSizes struct {
	failingFile
	mu    sync.Mutex
	sizes []int
}

func (f *writeSizes) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.sizes = append(f.sizes, len(p))
	f.mu.Unlock()
	return f.failingFile.Write(p)
}

// TestQueryLogFrameBound logs statements larger than a frame, after the
// header and after smaller ones: no write holds more than frameTarget
// bytes, and every statement arrives whole.
func TestQueryLogFrameBound(t *testing.T) {
	r, _ := newRecorder(t, Config{Compression: CompressionNone})
	ff := &writeSizes{failingFile: failingFile{limit: 1 << 40}}
	meta := Meta{ID: "p7", Kind: KindPostgres, Session: "p7", Start: t0, State: StateOpen, Path: filepath.Join(r.dir, "p7.jsonl")}
	q, err := r.startQueryLog(meta, ff)
	if err != nil {
		t.Fatal(err)
	}
	sqls := []string{
		strings.Repeat("x", frameTarget+frameTarget/2),
		"SELECT 1",
		strings.Repeat("y", frameTarget-100),
		strings.Repeat("z", 3*frameTarget/4),
	}
	for _, sql := range sqls {
		q.Log(Statement{Time: t0, Kind: StatementQuery, SQL: sql})
	}
	if _, err := q.Close("exit"); err != nil {
		t.Fatal(err)
	}
	ff.mu.Lock()
	sizes := slices.Clone(ff.sizes)
	ff.mu.Unlock()
	for i, n := range sizes {
		if n > frameTarget {
			t.Errorf("write %d of %d holds %d bytes; want at most frameTarget (%d)", i, len(sizes), n, frameTarget)
		}
	}
	var got []string
	for line := range strings.Lines(string(ff.Bytes())) {
		var s struct {
			Type, SQL string
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("line %.80q: %v", line, err)
		}
		if s.Type == "statement" {
			got = append(got, s.SQL)
		}
	}
	if !slices.Equal(got, sqls) {
		t.Errorf("got %d statements back; want the %d logged, whole", len(got), len(sqls))
	}
}
