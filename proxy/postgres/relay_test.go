package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/recording"
)

// msg encodes a regular message.
func msg(typ byte, parts ...string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	for _, p := range parts {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// cstr is s with its NUL.
func cstr(s string) string { return s + "\x00" }

// bind encodes a Bind of statement stmt to the unnamed portal with text
// parameters (nil is NULL).
func bind(stmt string, params ...*string) []byte {
	var b []byte
	b = append(b, cstr("")...)
	b = append(b, cstr(stmt)...)
	b = binary.BigEndian.AppendUint16(b, 0) // all text
	b = binary.BigEndian.AppendUint16(b, uint16(len(params)))
	for _, p := range params {
		if p == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(*p)))
		b = append(b, *p...)
	}
	b = binary.BigEndian.AppendUint16(b, 0)
	return msg('B', string(b))
}

func parse(name, sql string) []byte { return msg('P', cstr(name), cstr(sql), "\x00\x00") }
func execute() []byte               { return msg('E', cstr(""), "\x00\x00\x00\x00") }
func query(sql string) []byte       { return msg('Q', cstr(sql)) }
func sync_() []byte                 { return msg('S') }
func complete(tag string) []byte    { return msg('C', cstr(tag)) }
func ready() []byte                 { return msg('Z', "I") }
func dataRow(v string) []byte {
	b := binary.BigEndian.AppendUint16(nil, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return msg('D', string(append(b, v...)))
}
func errorResponse(code, m string) []byte {
	return msg('E', "SERROR\x00", "C"+cstr(code), "M"+cstr(m), "\x00")
}

// newQueryLog starts a query log in a temporary directory and returns it
// with a func that closes it and returns its statements.
func newQueryLog(t testing.TB, flush time.Duration) (*recording.QueryLog, func() []recording.Statement) {
	t.Helper()
	rec, err := recording.New(recording.Config{Dir: t.TempDir(), FlushInterval: flush})
	if err != nil {
		t.Fatal(err)
	}
	q, err := rec.StartPostgres(recording.PGMeta{Session: "s1", Person: "alice@example.com", Role: "app_ro", Database: "app", Target: "app-db"})
	if err != nil {
		t.Fatal(err)
	}
	return q, func() []recording.Statement {
		m, err := q.Close("done")
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		_, seq := recording.ReadQueryLog(bytes.NewReader(data))
		var out []recording.Statement
		for s, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
}

// conversation runs client messages, then server messages, through a
// session's two framers and tracker, the way the relay does.
func conversation(t *testing.T, tr *tracker, steps ...[2][]byte) {
	t.Helper()
	for _, s := range steps {
		for dir, data := range s {
			var f framer = clientFramer{tr, new(atomic.Bool)}
			if dir == 1 {
				f = serverFramer{tr}
			}
			var out bytes.Buffer
			var n atomic.Int64
			p := &pipe{src: bytes.NewReader(data), dst: &out, f: f, buf: ptr(make([]byte, relayBufSize)), limit: 1 << 20, count: &n,
				getBuf: func() *[]byte { return ptr(make([]byte, relayBufSize)) }, putBuf: func(*[]byte) {}}
			err := runPipe(p)
			if err != io.EOF {
				t.Fatalf("relay: %v", err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("relayed %q; want %q", out.Bytes(), data)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestTracker checks what the tracker records of the simple and extended
// protocols, errors in a batch, COPY and portals, from the messages alone.
func TestTracker(t *testing.T) {
	v7, v8 := "7", "8"
	tests := []struct {
		name   string
		steps  [][2][]byte
		values bool
		want   []string
	}{
		{
			name:  "simple query",
			steps: [][2][]byte{{query("select 1"), cat(msg('T', "\x00\x00"), dataRow("1"), complete("SELECT 1"), ready())}},
			want:  []string{"query|select 1|0|[]|1||"},
		},
		{
			name: "multi-statement query with an error",
			steps: [][2][]byte{{query("insert into t values (1); select 1/0"),
				cat(complete("INSERT 0 1"), errorResponse("22012", "division by zero"), ready())}},
			want: []string{"query|insert into t values (1); select 1/0|0|[]|1|22012|division by zero"},
		},
		{
			name: "extended, prepared twice",
			steps: [][2][]byte{
				{cat(parse("s1", "select $1::int"), msg('D', "S", cstr("s1")), sync_()), cat(msg('1'), msg('t', "\x00\x00"), msg('T', "\x00\x00"), ready())},
				{cat(bind("s1", &v7), execute(), sync_()), cat(msg('2'), dataRow("7"), complete("SELECT 1"), ready())},
				{cat(bind("s1", &v8), execute(), sync_()), cat(msg('2'), dataRow("8"), complete("SELECT 1"), ready())},
			},
			values: true,
			want:   []string{"execute|select $1::int|1|[7]|1||", "execute|select $1::int|1|[8]|1||"},
		},
		{
			name:   "values not recorded",
			steps:  [][2][]byte{{cat(parse("", "select $1"), bind("", &v7, nil), execute(), sync_()), cat(msg('1'), msg('2'), dataRow("7"), complete("SELECT 1"), ready())}},
			values: false,
			want:   []string{"execute|select $1|2|[]|1||"},
		},
		{
			name:   "null value",
			steps:  [][2][]byte{{cat(parse("", "select $1"), bind("", nil), execute(), sync_()), cat(msg('1'), msg('2'), dataRow(""), complete("SELECT 1"), ready())}},
			values: true,
			want:   []string{`execute|select $1|1|[\N]|1||`},
		},
		{
			name: "parse error skips the batch",
			steps: [][2][]byte{{cat(parse("", "selec 1"), bind(""), execute(), parse("", "select 2"), bind(""), execute(), sync_()),
				cat(errorResponse("42601", "syntax error"), ready())}},
			want: []string{"parse|selec 1|0|[]|0|42601|syntax error", "execute|selec 1|0|[]|0|42601|" + notRunMessage, "execute|select 2|0|[]|0|42601|" + notRunMessage},
		},
		{
			name: "execute error",
			steps: [][2][]byte{{cat(parse("", "select 1/$1"), bind("", &v7), execute(), sync_()),
				cat(msg('1'), msg('2'), errorResponse("22012", "division by zero"), ready())}},
			want: []string{"execute|select 1/$1|1|[]|0|22012|division by zero"},
		},
		{
			name: "portal suspended",
			steps: [][2][]byte{{cat(parse("", "select g"), bind(""), msg('E', cstr(""), "\x00\x00\x00\x02"), sync_()),
				cat(msg('1'), msg('2'), dataRow("1"), dataRow("2"), msg('s'), ready())}},
			want: []string{"execute|select g|0|[]|2||"},
		},
		{
			name: "copy in",
			steps: [][2][]byte{
				{query("copy t from stdin"), msg('G', "\x00\x00\x00")},
				{cat(msg('d', "1\tx\n"), msg('d', "2\ty\n"), msg('c')), cat(complete("COPY 2"), ready())},
			},
			want: []string{"copy|copy t from stdin|0|[]|2||8 bytes copied"},
		},
		{
			name:  "copy out",
			steps: [][2][]byte{{query("copy t to stdout"), cat(msg('H', "\x00\x00\x00"), msg('d', "1\tx\n"), msg('d', "2\ty\n"), msg('c'), complete("COPY 2"), ready())}},
			want:  []string{"copy|copy t to stdout|0|[]|2||8 bytes copied"},
		},
		{
			name:  "unknown statement",
			steps: [][2][]byte{{cat(bind("nope"), execute(), sync_()), cat(errorResponse("26000", "prepared statement \"nope\" does not exist"), ready())}},
			want:  []string{"bind|" + unknownStatement + "|0|[]|0|26000|prepared statement \"nope\" does not exist", "execute|" + unknownStatement + "|0|[]|0|26000|" + notRunMessage},
		},
		{
			name: "closed statement is forgotten",
			steps: [][2][]byte{
				{cat(parse("s", "select 1"), msg('C', "S", cstr("s")), sync_()), cat(msg('1'), msg('3'), ready())},
				{cat(bind("s"), execute(), sync_()), cat(errorResponse("26000", "gone"), ready())},
			},
			want: []string{"bind|" + unknownStatement + "|0|[]|0|26000|gone", "execute|" + unknownStatement + "|0|[]|0|26000|" + notRunMessage},
		},
		{
			name:  "empty query",
			steps: [][2][]byte{{query(""), cat(msg('I'), ready())}},
			want:  []string{"query||0|[]|0||"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, stmts := newQueryLog(t, time.Hour)
			tr := newTracker(q, time.Now, tt.values)
			conversation(t, tr, tt.steps...)
			if tr.busy() {
				t.Errorf("ops still in flight after the conversation")
			}
			var got []string
			for _, s := range stmts() {
				got = append(got, fmt.Sprintf("%s|%s|%d|%v|%d|%s|%s", s.Kind, s.SQL, s.Params, s.Values, s.Rows, s.Error, s.Message))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("recorded\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestTagRows reads row counts off command tags.
func TestTagRows(t *testing.T) {
	tests := []struct {
		tag  string
		want int64
	}{
		{"SELECT 3", 3}, {"INSERT 0 12", 12}, {"UPDATE 0", 0}, {"COPY 1000000", 1000000},
		{"BEGIN", 0}, {"CREATE TABLE", 0}, {"SELECT 99999999999999999999", 0}, {"", 0}, {"FETCH x1", 0},
	}
	for _, tt := range tests {
		if got := tagRows([]byte(tt.tag)); got != tt.want {
			t.Errorf("tagRows(%q) = %d; want %d", tt.tag, got, tt.want)
		}
	}
}

// TestPipeBuffers relays messages larger than the buffer: streamed ones
// at any size, held ones by growing the buffer, then back to a pooled one.
func TestPipeBuffers(t *testing.T) {
	q, _ := newQueryLog(t, time.Hour)
	tr := newTracker(q, time.Now, false)
	big := strings.Repeat("x", 3*relayBufSize)
	data := cat(query(big), msg('d', big), query("select 1"), msg('S'))
	var out bytes.Buffer
	var n atomic.Int64
	var gets, puts int
	p := &pipe{src: &chunkReader{data: data, n: 1000}, dst: &out, f: clientFramer{tr, new(atomic.Bool)}, buf: ptr(make([]byte, relayBufSize)), limit: 4 * relayBufSize, count: &n,
		getBuf: func() *[]byte { gets++; return ptr(make([]byte, relayBufSize)) }, putBuf: func(*[]byte) { puts++ }}
	err := runPipe(p)
	if err != io.EOF || !bytes.Equal(out.Bytes(), data) || n.Load() != int64(len(data)) {
		t.Fatalf("relayed %d bytes (counted %d), %v; want %d, EOF", out.Len(), n.Load(), err, len(data))
	}
	if len(*p.buf) != relayBufSize || gets != 1 || puts != 1 {
		t.Errorf("buffer %d bytes, %d gets, %d puts; want back to %d, 1, 1", len(*p.buf), gets, puts, relayBufSize)
	}
	// Over the limit: refused from the header.
	p = &pipe{src: bytes.NewReader(query(strings.Repeat("y", 5*relayBufSize))), dst: io.Discard, f: clientFramer{tr, new(atomic.Bool)}, buf: ptr(make([]byte, relayBufSize)), limit: 4 * relayBufSize, count: &n}
	var ue *userError
	if err := p.step(); !errors.As(err, &ue) || ue.code != codeProgramLimit {
		t.Errorf("over the limit: %v; want %s", err, codeProgramLimit)
	}
}

// chunkReader reads data n bytes at a time.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := copy(b, r.data[:min(r.n, len(r.data))])
	r.data = r.data[k:]
	return k, nil
}

// TestReadStartupPacketBound refuses a 2 GiB startup packet from its
// header, allocating next to nothing.
func TestReadStartupPacketBound(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readStartupBody(bytes.NewReader(make([]byte, 100)), [4]byte{0x7f, 0xff, 0xff, 0xff}, 1<<30)
	runtime.ReadMemStats(&after)
	var ue *userError
	if !errors.As(err, &ue) || ue.code != codeProtocolViolation {
		t.Fatalf("got %v; want a protocol violation", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("allocated %d bytes refusing it; want next to nothing", n)
	}
}

// TestParseStartupMessage reads the parameters people's clients send.
func TestParseStartupMessage(t *testing.T) {
	pkt := func(kv ...string) []byte {
		b := binary.BigEndian.AppendUint32(nil, 3<<16)
		for _, s := range kv {
			b = append(append(b, s...), 0)
		}
		return append(b, 0)
	}
	tests := []struct {
		name                   string
		body                   []byte
		person, target, dbname string
		params                 string
		wantCode               string
	}{
		{name: "target only", body: pkt("user", "Alice@Example.com", "database", "app-db"), person: "alice@example.com", target: "app-db", params: "map[]"},
		{name: "target and database", body: pkt("user", "alice@example.com", "database", "app-db/app", "application_name", "psql", "client_encoding", "UTF8", "options", "-c default_transaction_read_only=off"),
			person: "alice@example.com", target: "app-db", dbname: "app", params: "map[client_encoding:UTF8]"},
		{name: "no database", body: pkt("user", "alice@example.com"), person: "alice@example.com", target: "alice@example.com", params: "map[]"},
		{name: "no user", body: pkt("database", "app-db"), wantCode: codeInvalidAuthSpec},
		{name: "empty user", body: pkt("user", "", "database", "app-db"), wantCode: codeInvalidAuthSpec},
		{name: "odd pairs", body: pkt("user"), wantCode: codeProtocolViolation},
		{name: "no terminator", body: binary.BigEndian.AppendUint32(nil, 3<<16), wantCode: codeProtocolViolation},
		{name: "trailing bytes", body: append(pkt("user", "a"), 'x'), wantCode: codeProtocolViolation},
		{name: "replication", body: pkt("user", "a", "replication", "true"), wantCode: codeFeatureUnsupported},
		{name: "replication off", body: pkt("user", "a", "database", "t", "replication", "false"), person: "a", target: "t", params: "map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseStartupMessage(tt.body)
			if tt.wantCode != "" {
				var ue *userError
				if !errors.As(err, &ue) || ue.code != tt.wantCode {
					t.Errorf("got %v; want %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.person != tt.person || h.target != tt.target || h.database != tt.dbname || fmt.Sprint(h.params) != tt.params {
				t.Errorf("got %q %q %q %v; want %q %q %q %s", h.person, h.target, h.database, h.params, tt.person, tt.target, tt.dbname, tt.params)
			}
		})
	}
}

// relayRig is a relay between a fake client and a fake server over
// loopback TCP, with the session's two pipes and tracker in between.
type relayRig struct {
	client net.Conn // the fake client's end
	server net.Conn // the fake server's end
	wg     sync.WaitGroup
	closer []io.Closer
}

func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// newRelayRig starts the pipes; the fake server answers every Query with
// response.
func newRelayRig(t testing.TB, tr *tracker, response []byte) *relayRig {
	t.Helper()
	r := &relayRig{}
	client, proxyFromClient := tcpPair(t)
	proxyToServer, server := tcpPair(t)
	r.client, r.server = client, server
	var n1, n2 atomic.Int64
	newBuf := func() *[]byte { return ptr(make([]byte, relayBufSize)) }
	up := &pipe{src: proxyFromClient, dst: proxyToServer, f: clientFramer{tr, new(atomic.Bool)}, buf: newBuf(), limit: 1 << 20, count: &n1, getBuf: newBuf, putBuf: func(*[]byte) {}}
	down := &pipe{src: proxyToServer, dst: proxyFromClient, f: serverFramer{tr}, buf: newBuf(), limit: 1 << 20, count: &n2, getBuf: newBuf, putBuf: func(*[]byte) {}}
	for _, p := range []*pipe{up, down} {
		r.wg.Go(func() {
			for p.step() == nil {
			}
			proxyFromClient.Close()
			proxyToServer.Close()
		})
	}
	r.wg.Go(func() {
		br := bufio.NewReaderSize(server, 64<<10)
		var hdr [5]byte
		body := make([]byte, 64<<10)
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
			if _, err := io.ReadFull(br, body[:n]); err != nil {
				return
			}
			if hdr[0] == 'Q' {
				if _, err := server.Write(response); err != nil {
					return
				}
			}
		}
	})
	r.closer = []io.Closer{client, server, proxyFromClient, proxyToServer}
	return r
}

func (r *relayRig) close() {
	for _, c := range r.closer {
		c.Close()
	}
	r.wg.Wait()
}

// roundTrip sends q and reads n bytes of answer.
func (r *relayRig) roundTrip(q, answer []byte) error {
	if _, err := r.client.Write(q); err != nil {
		return err
	}
	_, err := io.ReadFull(r.client, answer)
	return err
}

// queryResponse is what the fake server answers: a one-column result of
// rows rows of size bytes each.
func queryResponse(rows, size int) []byte {
	resp := msg('T', "\x00\x01", cstr("x"), "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00")
	row := dataRow(strings.Repeat("r", size))
	for range rows {
		resp = append(resp, row...)
	}
	return cat(resp, complete(fmt.Sprintf("SELECT %d", rows)), ready())
}

// TestRelayAllocs checks that a recorded round trip through the relay
// allocates nothing once warm.
func TestRelayAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count is noisy in -short runs")
	}
	q, _ := newQueryLog(t, time.Hour)
	tr := newTracker(q, time.Now, true)
	resp := queryResponse(10, 100)
	r := newRelayRig(t, tr, resp)
	defer r.close()
	qm := query("select name, price, created_at from items where id = 1 and deleted_at is null")
	answer := make([]byte, len(resp))
	for range 200 {
		if err := r.roundTrip(qm, answer); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(500, func() {
		if err := r.roundTrip(qm, answer); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0.1 {
		t.Errorf("%.2f allocations per recorded round trip; want 0", allocs)
	}
}

// BenchmarkRelay measures recorded round trips (one Query, ten rows back)
// and a result streaming 1000 rows, through both pipes over loopback TCP.
func BenchmarkRelay(b *testing.B) {
	for _, bc := range []struct {
		name       string
		rows, size int
	}{
		{"roundtrip", 10, 100},
		{"rows", 1000, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q, _ := newQueryLog(b, time.Second)
			tr := newTracker(q, time.Now, false)
			resp := queryResponse(bc.rows, bc.size)
			r := newRelayRig(b, tr, resp)
			defer r.close()
			qm := query("select x from t where id = 1")
			answer := make([]byte, len(resp))
			b.ReportAllocs()
			b.SetBytes(int64(len(qm) + len(resp)))
			b.ResetTimer()
			for b.Loop() {
				if err := r.roundTrip(qm, answer); err != nil {
					b.Fatal(err)
				}
			}
			msgs := float64(b.N) * float64(1+bc.rows+3)
			b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkFraming measures the proxy's own work for one recorded
// pgbench -S transaction, without sockets: the client's messages through
// the client's framer, the server's answers through the server's, each in
// one chunk, into the query log.
func BenchmarkFraming(b *testing.B) {
	const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
	answer := cat(msg('T', "\x00\x01", cstr("abalance"), "\x00\x00\x40\x08\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"),
		dataRow("0"), complete("SELECT 1"), ready())
	for _, bc := range []struct {
		name        string
		sent, reply []byte
	}{
		{"simple", query("SELECT abalance FROM pgbench_accounts WHERE aid = 60263;"), answer},
		{"extended", cat(parse("", sql), bind("", ptr("60263")), msg('D', "P", cstr("")), execute(), sync_()),
			cat(msg('1'), msg('2'), answer)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q, _ := newQueryLog(b, time.Second)
			tr := newTracker(q, time.Now, false)
			src, dst := &rewinder{data: bc.sent}, &rewinder{data: bc.reply}
			var n atomic.Int64
			newBuf := func() *[]byte { return ptr(make([]byte, relayBufSize)) }
			up := &pipe{src: src, dst: io.Discard, f: clientFramer{tr, new(atomic.Bool)}, limit: 1 << 20, count: &n, getBuf: newBuf, putBuf: func(*[]byte) {}}
			down := &pipe{src: dst, dst: io.Discard, f: serverFramer{tr}, limit: 1 << 20, count: &n, getBuf: newBuf, putBuf: func(*[]byte) {}}
			b.ReportAllocs()
			for b.Loop() {
				src.off, dst.off = 0, 0
				if err := up.step(); err != nil {
					b.Fatal(err)
				}
				if err := down.step(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// rewinder reads data whole, again from off.
type rewinder struct {
	data []byte
	off  int
}

func (r *rewinder) Read(b []byte) (int, error) {
	n := copy(b, r.data[r.off:])
	r.off += n
	return n, nil
}

// countingWriter counts the writes it takes.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(b)
}

// TestPipeCoalesces checks that whatever one read brings goes through in
// one write, however many messages it holds, recorded or not, and that a
// message longer than a read streams through one write per read.
func TestPipeCoalesces(t *testing.T) {
	big := strings.Repeat("r", 3000)
	tests := []struct {
		name     string
		server   bool
		recorded bool
		reads    [][]byte
		want     int // writes
	}{
		{name: "extended batch", reads: [][]byte{cat(parse("", "select $1"), bind("", ptr("1")), msg('D', "P", cstr("")), execute(), sync_())}, recorded: true, want: 1},
		{name: "extended batch unrecorded", reads: [][]byte{cat(parse("", "select $1"), bind("", ptr("1")), msg('D', "P", cstr("")), execute(), sync_())}, want: 1},
		{name: "pipelined queries", reads: [][]byte{cat(query("select 1"), query("select 2"), query("select 3"))}, recorded: true, want: 1},
		{name: "result", server: true, recorded: true, reads: [][]byte{queryResponse(50, 20)}, want: 1},
		{name: "result in two reads", server: true, recorded: true, reads: [][]byte{queryResponse(50, 20)[:300], queryResponse(50, 20)[300:]}, want: 2},
		{name: "long row streams", server: true, recorded: true, reads: [][]byte{dataRow(big)[:1000], dataRow(big)[1000:2000], dataRow(big)[2000:]}, want: 3},
		{name: "split query waits whole", recorded: true, reads: [][]byte{query(big)[:1000], query(big)[1000:]}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr *tracker
			if tt.recorded {
				q, _ := newQueryLog(t, time.Hour)
				tr = newTracker(q, time.Now, false)
				if tt.server {
					conversation(t, tr, [2][]byte{query("select"), nil})
				}
			}
			var f framer = clientFramer{tr, new(atomic.Bool)}
			if tt.server {
				f = serverFramer{tr}
			}
			want := bytes.Join(tt.reads, nil)
			var out countingWriter
			var n atomic.Int64
			newBuf := func() *[]byte { return ptr(make([]byte, relayBufSize)) }
			p := &pipe{src: &readsReader{reads: tt.reads}, dst: &out, f: f, limit: 1 << 20, count: &n, getBuf: newBuf, putBuf: func(*[]byte) {}}
			err := runPipe(p)
			if err != io.EOF || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("relayed %d bytes, %v; want %d, EOF", out.Len(), err, len(want))
			}
			if out.writes != tt.want {
				t.Errorf("got %d writes; want %d", out.writes, tt.want)
			}
		})
	}
}

// readsReader returns reads one Read each, then EOF.
type readsReader struct{ reads [][]byte }

func (r *readsReader) Read(b []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.reads[0])
	if r.reads[0] = r.reads[0][n:]; len(r.reads[0]) == 0 {
		r.reads = r.reads[1:]
	}
	return n, nil
}

// TestPipeIdleHoldsNoBuffer checks that a pipe of the relay gives its
// relay buffer back while it waits for input, whether it reads its TCP
// connection raw or (as under TLS) through net.Conn and a small buffer,
// and takes one again when input comes, for messages longer than the
// small buffer too.
func TestPipeIdleHoldsNoBuffer(t *testing.T) {
	for _, tt := range []struct {
		name string
		raw  bool
	}{
		{name: "raw", raw: true},
		{name: "small", raw: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, proxySide := tcpPair(t)
			defer client.Close()
			defer proxySide.Close()
			var src net.Conn = proxySide
			if !tt.raw {
				src = struct{ net.Conn }{proxySide} // no SyscallConn, as a *tls.Conn
			}
			var held atomic.Int64
			var out lockedBuffer
			var n atomic.Int64
			s := &Server{maxRelayMessage: 1 << 20}
			p := s.newPipe(src, nil, clientFramer{nil, new(atomic.Bool)}, &n)
			p.dst = &out
			if got := p.raw != nil; got != tt.raw {
				t.Fatalf("raw read: %v; want %v", got, tt.raw)
			}
			p.getBuf = func() *[]byte { held.Add(1); return ptr(make([]byte, relayBufSize)) }
			p.putBuf = func(*[]byte) { held.Add(-1) }
			done := make(chan error, 1)
			go func() { done <- runPipe(p) }()
			var sent []byte
			for i, m := range [][]byte{query("select 1"), query(strings.Repeat("x", 3*smallReadSize)), query("select 2")} {
				if _, err := client.Write(m); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, m...)
				deadline := time.Now().Add(5 * time.Second)
				for out.Len() < len(sent) || held.Load() != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("message %d: relayed %d of %d bytes, holding %d buffers; want all, 0", i, out.Len(), len(sent), held.Load())
					}
					time.Sleep(time.Millisecond)
				}
			}
			if !bytes.Equal(out.Bytes(), sent) {
				t.Errorf("relayed %q; want %q", out.Bytes(), sent)
			}
			client.Close()
			if err := <-done; err != io.EOF {
				t.Errorf("ended with %v; want EOF", err)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// runPipe steps p until it fails, and returns the error (io.EOF at the
// end of its input).
func runPipe(p *pipe) error {
	for {
		if err := p.step(); err != nil {
			return err
		}
	}
}
