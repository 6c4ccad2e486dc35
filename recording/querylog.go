package recording

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// The kinds of Statement.
const (
	StatementQuery   = "query"   // simple protocol Query
	StatementParse   = "parse"   // extended protocol Parse
	StatementBind    = "bind"    // extended protocol Bind
	StatementExecute = "execute" // extended protocol Execute
	StatementCopy    = "copy"    // COPY in either direction
)

// PGMeta describes the PostgreSQL session a QueryLog records.
type PGMeta struct {
	// Session is the session ID; it names the file, so it may hold only
	// letters, digits, '.', '_' and '-'.
	Session string
	// Person is the identity; Role and Database what it reached on Target;
	// Amendment the amendment the session rides on.
	Person    string
	Role      string
	Database  string
	Target    string
	Amendment string
}

// QueryLogHeader is the first line of a query log.
type QueryLogHeader struct {
	Type      string    `json:"type"` // always "header"
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Session   string    `json:"session"`
	Person    string    `json:"person"`
	Role      string    `json:"role"`
	Database  string    `json:"database"`
	Target    string    `json:"target"`
	Amendment string    `json:"amendment,omitempty"`
	Start     time.Time `json:"start"`
}

// Statement is one line of a query log after the header. In the file it is
// a JSON object with "type":"statement", the time in RFC 3339 (UTC,
// nanoseconds), and the duration as "duration_ms", float milliseconds.
type Statement struct {
	// Time is when the statement was sent; zero means Now when logged.
	Time time.Time
	// Kind is StatementQuery, StatementParse, StatementBind,
	// StatementExecute or StatementCopy.
	Kind string
	// SQL is the statement text (for bind and execute, the prepared one's).
	SQL string
	// Params is the number of parameters.
	Params int
	// Values are the parameter values; nil unless the caller records them.
	Values []string
	// Rows is the row count from CommandComplete (or rows copied).
	Rows int64
	// Duration is from sending to CommandComplete or ErrorResponse.
	Duration time.Duration
	// Error is the SQLSTATE of an ErrorResponse, "" for success; Message
	// its message.
	Error   string
	Message string
}

// size is about what s takes in the log before escaping (which grows
// only control characters), for reserve and grow: every text field, each
// value's quotes and comma, and room for the fixed keys and numbers.
func (s *Statement) size() int {
	n := len(s.Kind) + len(s.SQL) + len(s.Error) + len(s.Message) + 256
	for _, v := range s.Values {
		n += len(v) + 3
	}
	return n
}

// QueryLog records one PostgreSQL session as JSON lines. Log is safe for
// concurrent use with itself and Close. It encodes the line into the
// recording's pending buffer, without allocating once that has grown, and
// returns; the Recorder's workers compress and write it.
type QueryLog struct {
	w *writer
}

// queryLogVersion is the version in every query log header.
const queryLogVersion = 1

// StartPostgres creates the recording file for one PostgreSQL session,
// writes its header and its sidecar, and returns the QueryLog to record
// into. The caller must close it: the Recorder's goroutines run while it
// has a recording open.
func (r *Recorder) StartPostgres(m PGMeta) (*QueryLog, error) {
	if !validID(m.Session) {
		return nil, fmt.Errorf("recording: session ID %q: use letters, digits, '.', '_' and '-'", m.Session)
	}
	meta := Meta{
		ID:        m.Session,
		Kind:      KindPostgres,
		Session:   m.Session,
		Person:    m.Person,
		Role:      m.Role,
		Database:  m.Database,
		Target:    m.Target,
		Amendment: m.Amendment,
		Start:     r.now(),
		State:     StateOpen,
	}
	f, err := r.create(&meta, ".jsonl")
	if err != nil {
		return nil, err
	}
	q, err := r.startQueryLog(meta, f)
	if err != nil {
		os.Remove(meta.Path)
		return nil, err
	}
	return q, nil
}

// startQueryLog writes the header of a query log to f and starts it.
func (r *Recorder) startQueryLog(meta Meta, f file) (*QueryLog, error) {
	b, err := json.Marshal(QueryLogHeader{
		Type:      "header",
		Version:   queryLogVersion,
		ID:        meta.ID,
		Session:   meta.Session,
		Person:    meta.Person,
		Role:      meta.Role,
		Database:  meta.Database,
		Target:    meta.Target,
		Amendment: meta.Amendment,
		Start:     meta.Start.UTC(),
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: encode %s header: %w", meta.ID, err)
	}
	w, err := r.open(meta, f, append(b, '\n'))
	if err != nil {
		return nil, err
	}
	w.encode = w.copyContent
	return &QueryLog{w: w}, nil
}

// copyContent is a query log's encode: Log encodes the lines itself. It
// fills the content up to frameTarget and no further, so a frame holds
// at most frameTarget bytes however the batch lines up with it.
func (w *writer) copyContent(batch []byte) error {
	for len(batch) > 0 {
		// spillIfFull keeps the content under frameTarget: room is > 0.
		step := batch[:min(len(batch), frameTarget-len(w.content))]
		batch = batch[len(step):]
		w.content = append(w.content, step...)
		if err := w.spillIfFull(); err != nil {
			return err
		}
	}
	return nil
}

// Log records one statement.
func (q *QueryLog) Log(s Statement) {
	q.w.mu.Lock()
	defer q.w.mu.Unlock()
	n := s.size()
	if !q.w.reserve(n) {
		return
	}
	q.w.grow(n)
	if s.Time.IsZero() {
		s.Time = q.w.now()
	}
	b := append(q.w.pending, `{"type":"statement","time":"`...)
	b = s.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":"`...)
	b = appendEscaped(b, s.Kind)
	b = append(b, `","sql":"`...)
	b = appendEscaped(b, s.SQL)
	b = append(b, `","params":`...)
	b = strconv.AppendInt(b, int64(s.Params), 10)
	if len(s.Values) > 0 {
		b = append(b, `,"values":[`...)
		for i, v := range s.Values {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = appendEscaped(b, v)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, s.Rows, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(s.Duration)/float64(time.Millisecond), 'f', -1, 64)
	if s.Error != "" {
		b = append(b, `,"error":"`...)
		b = appendEscaped(b, s.Error)
		b = append(b, '"')
	}
	if s.Message != "" {
		b = append(b, `,"message":"`...)
		b = appendEscaped(b, s.Message)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	q.w.pending = b
	q.w.appended()
}

// Close flushes, syncs and closes the file, and rewrites the sidecar with
// the end, endReason, size and SHA-256. It returns the final metadata, and
// the first write error if there was one (then State is StateIncomplete).
// Calling Close again returns the same; statements after Close are dropped.
func (q *QueryLog) Close(endReason string) (Meta, error) { return q.w.close(endReason) }

// Err returns the first write error, or nil. After one, the log drops
// everything else: the proxy decides whether the session goes on.
func (q *QueryLog) Err() error { return q.w.Err() }

// Meta returns the recording's metadata as it is now: State is StateOpen
// until Close.
func (q *QueryLog) Meta() Meta { return q.w.snapshot() }
