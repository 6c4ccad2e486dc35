package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jitproxy/jitproxy/recording"
)

// Bounds on what a tracker keeps.
const (
	// maxInFlight bounds the client messages awaiting an answer that a
	// tracker follows; past it the client's side of the relay waits for
	// answers, as a full socket buffer would make it.
	maxInFlight = 1 << 16
	// maxStatements bounds the named prepared statements and portals whose
	// text a tracker keeps; past it new ones are recorded without it.
	maxStatements = 1 << 14
	// maxRecordedValue bounds each parameter value recorded.
	maxRecordedValue = 4096
)

// nullValue stands for a NULL parameter in a recording's values, as in
// COPY's text format.
const nullValue = `\N`

// Texts recorded in place of SQL the tracker does not know.
const (
	unknownStatement = "-- unknown prepared statement"
	forgotStatement  = "-- statement text not kept: too many prepared statements"
	notRunMessage    = "not run: an earlier message of the same batch failed"
)

// tracker follows the statements in flight on one session, from the
// client's messages to the server's answers, and logs each one finished to
// the session's query log. The client's side of the relay calls the
// sent* methods and the server's side the answer methods; each side's own
// fields are its alone.
type tracker struct {
	qlog   *recording.QueryLog
	now    func() time.Time
	values bool // record parameter values

	// The client's side.
	unnamed  prepared             // the unnamed statement
	stmts    map[string]*prepared // named statements
	unportal prepared             // the unnamed portal
	portals  map[string]*prepared // named portals
	maxStmts int
	// lastRun is the Query, Execute or FunctionCall sent last: the
	// client's CopyData count toward it.
	lastRun *op

	// The server's side.
	dataRows int64 // DataRows since the last finished op
	copyOut  int64 // CopyData bytes to the client since the last finished op

	mu     sync.Mutex // guards ring, head, n and closed
	space  sync.Cond  // signalled when n drops below maxInFlight, or on close
	ring   []*op      // ops in flight, oldest at head
	head   int
	n      int
	closed bool
}

// prepared is a statement or portal the client made: its SQL, and for a
// portal its parameters.
type prepared struct {
	sql    []byte
	params int
	vals   []byte // the values, rendered one after the other
	ends   []int  // the end of each value in vals
}

// op is one client message that awaits an answer: Query, Parse, Bind,
// Describe, Close, Execute, Sync or FunctionCall.
type op struct {
	typ    byte
	start  time.Time
	end    time.Time // the last CommandComplete or ErrorResponse of a Query
	copy   bool
	failed bool
	prepared
	rows    int64
	bytes   int64
	errCode []byte
	errMsg  []byte
	strs    []string // scratch: the values as strings, for Log
	// copyIn counts the client's CopyData bytes; the client's side adds
	// to it while the server's side may read it.
	copyIn atomic.Int64
}

func newTracker(qlog *recording.QueryLog, now func() time.Time, values bool) *tracker {
	t := &tracker{
		qlog:     qlog,
		now:      now,
		values:   values,
		stmts:    make(map[string]*prepared),
		portals:  make(map[string]*prepared),
		ring:     make([]*op, 8), // grows while more are in flight
		maxStmts: maxStatements,
	}
	t.space.L = &t.mu
	return t
}

// reserve returns the op to fill for the next message awaiting an answer,
// waiting while maxInFlight are; it returns nil once the tracker is closed.
// Only the client's side calls it, and it publishes the op with publish.
func (t *tracker) reserve() *op {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n >= maxInFlight && !t.closed {
		t.space.Wait()
	}
	if t.closed {
		return nil
	}
	if t.n == len(t.ring) {
		ring := make([]*op, 2*len(t.ring))
		for i := range t.n {
			ring[i] = t.ring[(t.head+i)%len(t.ring)]
		}
		t.ring, t.head = ring, 0
	}
	i := (t.head + t.n) % len(t.ring)
	o := t.ring[i]
	if o == nil {
		o = new(op)
		t.ring[i] = o
	}
	o.reset()
	return o
}

// publish makes the op reserve returned visible to the server's side.
func (t *tracker) publish() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

// peek returns the oldest op in flight, or nil. The op stays the server's
// side's to read and change until it pops it.
func (t *tracker) peek() *op {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return nil
	}
	return t.ring[t.head]
}

// pop drops the oldest op in flight.
func (t *tracker) pop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return
	}
	t.head = (t.head + 1) % len(t.ring)
	t.n--
	if t.n == maxInFlight-1 {
		t.space.Signal()
	}
}

// busy reports whether any message awaits an answer.
func (t *tracker) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n > 0
}

// close wakes and stops a client's side waiting in reserve.
func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.space.Broadcast()
}

func (o *op) reset() {
	o.typ = 0
	o.start, o.end = time.Time{}, time.Time{}
	o.copy, o.failed = false, false
	o.sql, o.vals, o.ends = o.sql[:0], o.vals[:0], o.ends[:0]
	o.params = 0
	o.rows, o.bytes = 0, 0
	o.errCode, o.errMsg = o.errCode[:0], o.errMsg[:0]
	o.copyIn.Store(0)
}

// sentCopyData counts a CopyData from the client toward the statement it
// feeds.
func (t *tracker) sentCopyData(n int) {
	if t.lastRun != nil {
		t.lastRun.copyIn.Add(int64(n))
	}
}

// The client's side.

// sent records a client message that awaits an answer but whose body is
// not recorded (Describe, Sync).
func (t *tracker) sent(typ byte) {
	if o := t.reserve(); o != nil {
		o.typ = typ
		t.publish()
	}
}

// sentQuery records a simple Query.
func (t *tracker) sentQuery(body []byte) error {
	sql, _, ok := cstring(body)
	if !ok {
		return malformed('Q')
	}
	if o := t.reserve(); o != nil {
		o.typ, o.start = 'Q', t.now()
		o.sql = append(o.sql, sql...)
		t.lastRun = o
		t.publish()
	}
	return nil
}

// sentParse records a Parse: the statement's text, kept by name.
func (t *tracker) sentParse(body []byte) error {
	name, rest, ok := cstring(body)
	if !ok {
		return malformed('P')
	}
	sql, _, ok := cstring(rest)
	if !ok {
		return malformed('P')
	}
	if p := t.statement(name, true); p != nil {
		p.sql = append(p.sql[:0], sql...)
	}
	if o := t.reserve(); o != nil {
		o.typ, o.start = 'P', t.now()
		o.sql = append(o.sql, sql...)
		t.publish()
	}
	return nil
}

// statement returns the statement named name (creating it if create and
// there is room), or nil.
func (t *tracker) statement(name []byte, create bool) *prepared {
	if len(name) == 0 {
		return &t.unnamed
	}
	if p := t.stmts[string(name)]; p != nil || !create {
		return p
	}
	if len(t.stmts) >= t.maxStmts {
		return nil
	}
	p := new(prepared)
	t.stmts[string(name)] = p
	return p
}

// portal returns the portal named name (creating it if create and there is
// room), or nil.
func (t *tracker) portal(name []byte, create bool) *prepared {
	if len(name) == 0 {
		return &t.unportal
	}
	if p := t.portals[string(name)]; p != nil || !create {
		return p
	}
	if len(t.portals) >= t.maxStmts {
		return nil
	}
	p := new(prepared)
	t.portals[string(name)] = p
	return p
}

// sentBind records a Bind: the portal gets its statement's text and the
// parameters (their values only if the tracker records them).
func (t *tracker) sentBind(body []byte) error {
	portal, rest, ok := cstring(body)
	if !ok {
		return malformed('B')
	}
	name, rest, ok := cstring(rest)
	if !ok {
		return malformed('B')
	}
	p := t.portal(portal, true)
	var scratch prepared
	if p == nil {
		p = &scratch
	}
	p.sql, p.vals, p.ends = p.sql[:0], p.vals[:0], p.ends[:0]
	switch s := t.statement(name, false); {
	case s != nil:
		p.sql = append(p.sql, s.sql...)
	case len(t.stmts) >= t.maxStmts:
		p.sql = append(p.sql, forgotStatement...)
	default:
		p.sql = append(p.sql, unknownStatement...)
	}
	params, err := t.bindParams(p, rest)
	if err != nil {
		return err
	}
	p.params = params
	if o := t.reserve(); o != nil {
		o.typ, o.start = 'B', t.now()
		o.sql = append(o.sql, p.sql...)
		o.params = params
		t.publish()
	}
	return nil
}

// bindParams reads the parameters of a Bind (after its names), rendering
// the values into p when the tracker records them.
func (t *tracker) bindParams(p *prepared, b []byte) (int, error) {
	if len(b) < 2 {
		return 0, malformed('B')
	}
	nf := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 2*nf+2 {
		return 0, malformed('B')
	}
	formats := b[:2*nf]
	b = b[2*nf:]
	np := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := range np {
		if len(b) < 4 {
			return 0, malformed('B')
		}
		n := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		var v []byte
		if n >= 0 {
			if n > len(b) {
				return 0, malformed('B')
			}
			v, b = b[:n], b[n:]
		}
		if !t.values {
			continue
		}
		binaryFormat := false
		switch {
		case nf == 1:
			binaryFormat = binary.BigEndian.Uint16(formats) == 1
		case nf > 1 && i < nf:
			binaryFormat = binary.BigEndian.Uint16(formats[2*i:]) == 1
		}
		p.vals = appendValue(p.vals, v, n < 0, binaryFormat)
		p.ends = append(p.ends, len(p.vals))
	}
	return np, nil
}

// appendValue renders one parameter value for the recording: text as it
// is, binary as \x and hex (as bytea prints), NULL as \N, each cut at
// maxRecordedValue bytes.
func appendValue(dst, v []byte, null, binaryFormat bool) []byte {
	switch {
	case null:
		return append(dst, nullValue...)
	case binaryFormat:
		dst = append(dst, `\x`...)
		if len(v) > maxRecordedValue/2 {
			v = v[:maxRecordedValue/2]
		}
		return hex.AppendEncode(dst, v)
	case len(v) > maxRecordedValue:
		return append(append(dst, v[:maxRecordedValue]...), "…"...)
	}
	return append(dst, v...)
}

// sentExecute records an Execute of a portal.
func (t *tracker) sentExecute(body []byte) error {
	name, _, ok := cstring(body)
	if !ok {
		return malformed('E')
	}
	p := t.portal(name, false)
	o := t.reserve()
	if o == nil {
		return nil
	}
	o.typ, o.start = 'E', t.now()
	if p == nil {
		o.sql = append(o.sql, unknownStatement...)
	} else {
		o.sql = append(o.sql, p.sql...)
		o.params = p.params
		o.vals = append(o.vals, p.vals...)
		o.ends = append(o.ends, p.ends...)
	}
	t.lastRun = o
	t.publish()
	return nil
}

// sentClose records a Close of a statement or portal, which forgets it.
func (t *tracker) sentClose(body []byte) error {
	if len(body) < 1 {
		return malformed('C')
	}
	name, _, ok := cstring(body[1:])
	if !ok {
		return malformed('C')
	}
	switch body[0] {
	case 'S':
		if len(name) > 0 {
			delete(t.stmts, string(name))
		}
	case 'P':
		if len(name) > 0 {
			delete(t.portals, string(name))
		}
	default:
		return malformed('C')
	}
	t.sent('C')
	return nil
}

// sentFunctionCall records a fast-path FunctionCall (large objects use
// them), as a query naming the function.
func (t *tracker) sentFunctionCall(body []byte) error {
	if len(body) < 4 {
		return malformed('F')
	}
	if o := t.reserve(); o != nil {
		o.typ, o.start = 'F', t.now()
		o.sql = append(o.sql, "-- fast-path function call, function OID "...)
		o.sql = strconv.AppendUint(o.sql, uint64(binary.BigEndian.Uint32(body)), 10)
		t.lastRun = o
		t.publish()
	}
	return nil
}

// The server's side.

// answered pops the oldest op if it is of type typ: the answers that only
// acknowledge (ParseComplete, BindComplete, CloseComplete, and
// RowDescription or NoData ending a Describe).
func (t *tracker) answered(typ byte) {
	if o := t.peek(); o != nil && o.typ == typ {
		t.pop()
	}
}

// copyStarted marks the oldest op as a COPY.
func (t *tracker) copyStarted() {
	if o := t.peek(); o != nil {
		o.copy = true
	}
}

// commandComplete ends an Execute, or one statement of a Query, with the
// rows its tag counts.
func (t *tracker) commandComplete(body []byte) {
	tag, _, _ := cstring(body)
	o := t.peek()
	if o == nil {
		return
	}
	switch o.typ {
	case 'Q':
		o.rows += tagRows(tag)
		o.end = t.now()
		t.takeCopyBytes(o)
	case 'E':
		o.rows = tagRows(tag)
		t.takeCopyBytes(o)
		t.finish(o, t.now(), false)
		t.pop()
	}
	t.dataRows = 0
}

// takeCopyBytes adds the bytes copied since the op's COPY began.
func (t *tracker) takeCopyBytes(o *op) {
	if o.copy {
		o.bytes += o.copyIn.Swap(0) + t.copyOut
	}
	t.copyOut = 0
}

// executeDone ends an Execute that returned no CommandComplete: its portal
// was suspended (rows are the DataRows sent), or its query was empty.
func (t *tracker) executeDone() {
	if o := t.peek(); o != nil && o.typ == 'E' {
		o.rows = t.dataRows
		t.finish(o, t.now(), false)
		t.pop()
	}
	t.dataRows = 0
}

// errorResponse records an error on the op it answers. A Query goes on
// to its ReadyForQuery; in the extended protocol the server skips every
// message until the next Sync, so the failed op and those skipped are
// finished now.
func (t *tracker) errorResponse(body []byte) {
	code, msg := errorFields(body)
	o := t.peek()
	if o == nil {
		return
	}
	end := t.now()
	if o.typ == 'Q' || o.typ == 'F' {
		if !o.failed {
			o.failed = true
			o.errCode = append(o.errCode[:0], code...)
			o.errMsg = append(o.errMsg[:0], msg...)
		}
		o.end = end
		t.takeCopyBytes(o)
		return
	}
	first := true
	for o != nil && o.typ != 'S' {
		if first {
			o.errCode = append(o.errCode[:0], code...)
			o.errMsg = append(o.errMsg[:0], msg...)
			o.failed = true
			t.takeCopyBytes(o)
			if o.typ == 'E' || o.typ == 'P' || o.typ == 'B' {
				t.finish(o, end, false)
			}
		} else if o.typ == 'E' {
			o.errCode = append(o.errCode[:0], code...)
			o.failed = true
			t.finish(o, end, true)
		}
		first = false
		t.pop()
		o = t.peek()
	}
	t.dataRows = 0
}

// readyForQuery ends a Query or FunctionCall, or the Sync of a batch
// (finishing any op of it still open).
func (t *tracker) readyForQuery() {
	now := t.now()
	for o := t.peek(); o != nil; o = t.peek() {
		switch o.typ {
		case 'Q', 'F':
			end := o.end
			if end.IsZero() {
				end = now
			}
			t.finish(o, end, false)
			t.pop()
			t.dataRows = 0
			return
		case 'S':
			t.pop()
			t.dataRows = 0
			return
		case 'E':
			t.finish(o, now, true)
		}
		t.pop()
	}
	t.dataRows = 0
}

// abandon finishes every Query, FunctionCall and Execute still in flight
// when the session ends, with code and message as their error. Only once
// both sides of the relay have stopped.
func (t *tracker) abandon(code, message string) {
	now := t.now()
	for o := t.peek(); o != nil; o = t.peek() {
		if o.typ == 'Q' || o.typ == 'F' || o.typ == 'E' {
			if !o.failed {
				o.failed = true
				o.errCode = append(o.errCode[:0], code...)
				o.errMsg = append(o.errMsg[:0], message...)
			}
			t.takeCopyBytes(o)
			t.finish(o, now, false)
		}
		t.pop()
	}
}

// finish logs one finished op: a Query, FunctionCall or Execute, or a
// Parse or Bind that failed. notRun marks an Execute the server skipped.
func (t *tracker) finish(o *op, end time.Time, notRun bool) {
	kind := recording.StatementQuery
	switch {
	case o.copy:
		kind = recording.StatementCopy
	case o.typ == 'E':
		kind = recording.StatementExecute
	case o.typ == 'P':
		kind = recording.StatementParse
	case o.typ == 'B':
		kind = recording.StatementBind
	}
	s := recording.Statement{
		Time:     o.start,
		Kind:     kind,
		SQL:      str(o.sql),
		Params:   o.params,
		Rows:     o.rows,
		Duration: end.Sub(o.start),
		Error:    str(o.errCode),
		Message:  str(o.errMsg),
	}
	if notRun {
		s.Message = notRunMessage
		s.Duration = 0
	}
	if o.copy && !o.failed {
		o.errMsg = append(strconv.AppendInt(o.errMsg[:0], o.bytes, 10), " bytes copied"...)
		s.Message = str(o.errMsg)
	}
	if len(o.ends) > 0 {
		o.strs = o.strs[:0]
		start := 0
		for _, e := range o.ends {
			o.strs = append(o.strs, str(o.vals[start:e]))
			start = e
		}
		s.Values = o.strs
	}
	t.qlog.Log(s)
}

// str views b as a string without copying. Only for strings handed to
// QueryLog.Log, which copies what it keeps before returning, while b is not
// written.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// tagRows returns the row count at the end of a command tag ("SELECT 3",
// "INSERT 0 3", "COPY 3"), or 0 for tags without one ("BEGIN").
func tagRows(tag []byte) int64 {
	i := bytes.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range tag[i+1:] {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// errorFields returns the SQLSTATE and message of an ErrorResponse body
// (slices of it).
func errorFields(b []byte) (code, msg []byte) {
	for len(b) > 0 && b[0] != 0 {
		f := b[0]
		v, rest, ok := cstring(b[1:])
		if !ok {
			break
		}
		switch f {
		case 'C':
			code = v
		case 'M':
			msg = v
		}
		b = rest
	}
	return code, msg
}
