// Package audit defines the audit event, the hash chain that makes the trail
// tamper-evident, and how a trail is verified and exported. It does not store
// events: the store appends each one in the same transaction as the change it
// records.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Genesis is the prev_hash of the first event: 32 zero bytes in hex.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Event types that are not amendment transitions (those are named by the
// amendment package).
const (
	TypeLogin           = "auth.login"
	TypeLogout          = "auth.logout"
	TypeCertMinted      = "cert.minted"
	TypeDBTokenIssued   = "dbtoken.issued"
	TypeSessionStart    = "session.start"
	TypeSessionEnd      = "session.end"
	TypeSessionCut      = "session.cut"
	TypeSessionRefused  = "session.refused"
	TypeRecordingSealed = "recording.sealed"
)

// Event is one row of the audit trail. hash = SHA-256(prev_hash || canonical
// event), where the canonical event covers every field but the two hashes.
type Event struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	Type      string          `json:"type"`
	Actor     string          `json:"actor"`
	Amendment string          `json:"amendment,omitempty"`
	Session   string          `json:"session,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// NewEvent builds an unsealed event with data marshalled to JSON.
func NewEvent(t time.Time, typ, actor string, data any) (Event, error) {
	e := Event{Time: t, Type: typ, Actor: actor}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return Event{}, fmt.Errorf("audit: marshal %s data: %w", typ, err)
		}
		e.Data = b
	}
	return e, nil
}

// Seal sets seq, normalizes the time to what every store keeps (UTC,
// microseconds) and the data to its canonical form, and computes the hash
// chained to prev (the previous event's hash, or Genesis).
func (e *Event) Seal(seq int64, prev string) error {
	e.Seq = seq
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	data, err := canonicalJSON(e.Data)
	if err != nil {
		return fmt.Errorf("audit: event %d data: %w", seq, err)
	}
	e.Data = data
	e.PrevHash = prev
	e.Hash, err = e.computeHash()
	return err
}

// computeHash returns hex(SHA-256(prev_hash bytes || canonical event)).
func (e *Event) computeHash() (string, error) {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("audit: event %d: prev_hash is not a SHA-256 in hex", e.Seq)
	}
	canon, err := e.canonical()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonical is the event as hashed: a JSON object with keys in a fixed order,
// the time in RFC 3339 UTC with nanoseconds, data re-encoded with sorted keys.
func (e *Event) canonical() ([]byte, error) {
	data, err := canonicalJSON(e.Data)
	if err != nil {
		return nil, fmt.Errorf("audit: event %d data: %w", e.Seq, err)
	}
	var b bytes.Buffer
	b.WriteString(`{"seq":`)
	b.WriteString(strconv.FormatInt(e.Seq, 10))
	for _, f := range []struct{ k, v string }{
		{"time", e.Time.UTC().Format(time.RFC3339Nano)},
		{"type", e.Type},
		{"actor", e.Actor},
		{"amendment", e.Amendment},
		{"session", e.Session},
	} {
		b.WriteString(`,"` + f.k + `":`)
		s, _ := json.Marshal(f.v) // marshalling a string cannot fail
		b.Write(s)
	}
	b.WriteString(`,"data":`)
	b.Write(data)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// canonicalJSON re-encodes raw with sorted object keys and no insignificant
// space, so a store that re-formats JSON (PostgreSQL's jsonb does) keeps the
// hash. Numbers keep their exact text. Empty means null.
func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null"), nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps encode with sorted keys
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
