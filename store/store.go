// Package store persists amendments, the audit trail and login sessions, and
// publishes committed amendment changes. The embedded default is SQLite (a
// file in the data directory); every backend passes the conformance suite in
// store/storetest unchanged. It decides nothing: which transitions are legal
// is package amendment's, and how the audit chain is hashed and verified is
// package audit's; the store only writes each change and its audit row
// atomically and in order.
package store

import (
	"context"
	"iter"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// Store is everything jitproxy persists. Each amendment change and its audit
// row commit in one transaction; the audit trail is one hash chain.
type Store interface {
	amendment.Store

	// AppendAudit seals e onto the end of the chain (it sets Seq, PrevHash
	// and Hash) and stores it; it returns the sealed event. For events that
	// change no amendment: logins, certificates, sessions, recordings.
	AppendAudit(ctx context.Context, e audit.Event) (audit.Event, error)
	// AuditEvents yields stored audit events with seq > after, in seq order.
	AuditEvents(ctx context.Context, after int64) iter.Seq2[audit.Event, error]

	// Ready reports whether the store can serve (for /readyz).
	Ready(ctx context.Context) error
	// Close stops publishing events and closes the database cleanly.
	Close() error
}
