package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"time"
)

// Event is one event of an asciicast v2 file.
type Event struct {
	// Elapsed is the time since the start of the recording.
	Elapsed time.Duration
	// Type is "o" (output), "i" (input) or "r" (resize).
	Type string
	// Data is the text, or "COLSxROWS" for a resize.
	Data string
}

// ReadCast reads the header of the asciicast v2 file in r, plain or
// zstd-compressed, and returns it with the sequence of its events, which
// reads r as it goes (once). If the last line or the last zstd frame is cut
// short, as a writer killed mid-write leaves it, the sequence yields every
// complete event and then ErrTruncated. If the header cannot be read,
// Header is zero and the sequence yields only that error.
func ReadCast(r io.Reader) (Header, iter.Seq2[Event, error]) {
	lr, err := newLineReader(r)
	var h Header
	if err == nil {
		err = lr.header(&h)
	}
	if err == nil && h.Version != 2 {
		err = fmt.Errorf("recording: asciicast version %d; want 2", h.Version)
	}
	if err != nil {
		if lr != nil {
			lr.close()
		}
		return Header{}, func(yield func(Event, error) bool) { yield(Event{}, err) }
	}
	return h, func(yield func(Event, error) bool) {
		defer lr.close()
		for {
			line, complete, err := lr.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(Event{}, err)
				return
			}
			e, err := parseEvent(line)
			if err != nil {
				if !complete {
					err = ErrTruncated
				} else {
					err = fmt.Errorf("recording: line %d: %w", lr.n, err)
				}
				yield(Event{}, err)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// parseEvent parses one event line: [elapsed, "code", "data"].
func parseEvent(line []byte) (Event, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Event{}, err
	}
	if len(raw) != 3 {
		return Event{}, fmt.Errorf("an event has 3 elements, not %d", len(raw))
	}
	var secs float64
	var e Event
	if err := json.Unmarshal(raw[0], &secs); err != nil {
		return Event{}, fmt.Errorf("event time: %w", err)
	}
	if secs < 0 || math.IsNaN(secs) || secs > float64(math.MaxInt64/int64(time.Second)) {
		return Event{}, fmt.Errorf("event time %v is out of range", secs)
	}
	if err := json.Unmarshal(raw[1], &e.Type); err != nil {
		return Event{}, fmt.Errorf("event type: %w", err)
	}
	if err := json.Unmarshal(raw[2], &e.Data); err != nil {
		return Event{}, fmt.Errorf("event data: %w", err)
	}
	e.Elapsed = time.Duration(math.Round(secs * float64(time.Second)))
	return e, nil
}

// ReadQueryLog reads the header of the query log in r, plain or
// zstd-compressed, and returns it with the sequence of its statements,
// which reads r as it goes (once). A last line or zstd frame cut short ends
// the sequence with ErrTruncated, as in ReadCast.
func ReadQueryLog(r io.Reader) (QueryLogHeader, iter.Seq2[Statement, error]) {
	lr, err := newLineReader(r)
	var h QueryLogHeader
	if err == nil {
		err = lr.header(&h)
	}
	if err == nil && (h.Type != "header" || h.Version != queryLogVersion) {
		err = fmt.Errorf("recording: query log header of type %q, version %d; want header, version %d", h.Type, h.Version, queryLogVersion)
	}
	if err != nil {
		if lr != nil {
			lr.close()
		}
		return QueryLogHeader{}, func(yield func(Statement, error) bool) { yield(Statement{}, err) }
	}
	return h, func(yield func(Statement, error) bool) {
		defer lr.close()
		for {
			line, complete, err := lr.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(Statement{}, err)
				return
			}
			s, err := parseStatement(line)
			if err != nil {
				if !complete {
					err = ErrTruncated
				} else {
					err = fmt.Errorf("recording: line %d: %w", lr.n, err)
				}
				yield(Statement{}, err)
				return
			}
			if !yield(s, nil) {
				return
			}
		}
	}
}

// statementJSON is a Statement as a query log line holds it.
type statementJSON struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	SQL        string    `json:"sql"`
	Params     int       `json:"params"`
	Values     []string  `json:"values"`
	Rows       int64     `json:"rows"`
	DurationMS float64   `json:"duration_ms"`
	Error      string    `json:"error"`
	Message    string    `json:"message"`
}

// parseStatement parses one statement line.
func parseStatement(line []byte) (Statement, error) {
	var j statementJSON
	if err := json.Unmarshal(line, &j); err != nil {
		return Statement{}, err
	}
	if j.Type != "statement" {
		return Statement{}, fmt.Errorf("record of type %q; want statement", j.Type)
	}
	return Statement{
		Time:     j.Time,
		Kind:     j.Kind,
		SQL:      j.SQL,
		Params:   j.Params,
		Values:   j.Values,
		Rows:     j.Rows,
		Duration: time.Duration(math.Round(j.DurationMS * float64(time.Millisecond))),
		Error:    j.Error,
		Message:  j.Message,
	}, nil
}

// lineReader reads a recording line by line, however long the lines.
type lineReader struct {
	src       io.ReadCloser // the plain content (NewReader)
	br        *bufio.Reader
	n         int  // number of the last line read, from 1
	truncated bool // the zstd stream was cut short
}

func newLineReader(r io.Reader) (*lineReader, error) {
	src, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	return &lineReader{src: src, br: bufio.NewReaderSize(src, 64<<10)}, nil
}

// close releases the decoder, if any.
func (lr *lineReader) close() { lr.src.Close() }

// header reads the first line into v.
func (lr *lineReader) header(v any) error {
	line, _, err := lr.next()
	if errors.Is(err, io.EOF) {
		return errors.New("recording: the file is empty: no header")
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("recording: header: %w", err)
	}
	return nil
}

// next returns the next non-blank line without its newline, and whether it
// ended with one; io.EOF at the end, or ErrTruncated at the end of a zstd
// stream cut short.
func (lr *lineReader) next() (line []byte, complete bool, err error) {
	for {
		line, err = lr.br.ReadBytes('\n')
		if errors.Is(err, ErrTruncated) {
			lr.truncated, err = true, io.EOF
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, false, fmt.Errorf("recording: read: %w", err)
		}
		complete = err == nil
		if len(line) == 0 && !complete {
			return nil, false, lr.end()
		}
		lr.n++
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			return line, complete, nil
		}
		if !complete {
			return nil, false, lr.end()
		}
	}
}

// end is what next returns at the end of the content.
func (lr *lineReader) end() error {
	if lr.truncated {
		return ErrTruncated
	}
	return io.EOF
}
