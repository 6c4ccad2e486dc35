// Package amendment is the domain core of jitproxy: the contract (standing
// policy), amendments (just-in-time grants) and the state machine between
// them. It decides who may ask for what and which transitions are legal; it
// does not persist, serve or log anything itself (see Store).
package amendment

import (
	"slices"
	"strings"
	"time"
)

// TargetKind says which proxy serves a target.
type TargetKind string

// Target kinds.
const (
	KindSSH      TargetKind = "ssh"
	KindPostgres TargetKind = "postgres"
)

// Resource is what one amendment grants: one target, and on it one SSH
// login or one PostgreSQL role (and database).
type Resource struct {
	Target string     `json:"target"`
	Kind   TargetKind `json:"kind"`
	// Login is the SSH login (the Unix user on the target). SSH only.
	Login string `json:"login,omitempty"`
	// Role and Database are the PostgreSQL role and database. Postgres only;
	// an empty Database means any database the rule allows.
	Role     string `json:"role,omitempty"`
	Database string `json:"database,omitempty"`
	// PortForwarding allows SSH port forwarding. SSH only.
	PortForwarding bool `json:"port_forwarding,omitempty"`
	// ReadOnly runs PostgreSQL sessions with default_transaction_read_only.
	ReadOnly bool `json:"read_only,omitempty"`
}

// String names the resource the way a person writes it: ubuntu@web-1,
// app_ro@app-db/app.
func (r Resource) String() string {
	switch r.Kind {
	case KindPostgres:
		s := r.Role + "@" + r.Target
		if r.Database != "" {
			s += "/" + r.Database
		}
		return s
	default:
		return r.Login + "@" + r.Target
	}
}

// Approval is one approver's yes.
type Approval struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Extension is a request to move an active amendment's expiry.
type Extension struct {
	Duration    time.Duration `json:"duration"`
	Reason      string        `json:"reason"`
	RequestedBy string        `json:"requested_by"`
	RequestedAt time.Time     `json:"requested_at"`
	Approvals   []Approval    `json:"approvals,omitempty"`
	// Applied is when it took effect; zero while pending.
	Applied time.Time `json:"applied,omitzero"`
	// Denied is when an approver turned it down; zero otherwise.
	Denied   time.Time `json:"denied,omitzero"`
	DeniedBy string    `json:"denied_by,omitempty"`
}

// Amendment is one just-in-time grant for one requester. Every field is the
// state after the transition that produced Version; the audit trail holds the
// history.
type Amendment struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	State   State  `json:"state"`
	// Requester is the identity key (lower-cased email) of the person asking.
	Requester string `json:"requester"`
	// Rule is the name of the contract rule the request was granted under.
	Rule     string        `json:"rule"`
	Resource Resource      `json:"resource"`
	Reason   string        `json:"reason"`
	Ticket   string        `json:"ticket,omitempty"`
	Duration time.Duration `json:"duration"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// StartAt is a scheduled start; zero means as soon as approved.
	StartAt time.Time `json:"start_at,omitzero"`
	// RequestExpiresAt is when a still-pending request is withdrawn.
	RequestExpiresAt time.Time `json:"request_expires_at"`
	// ActivatedAt and ExpiresAt bound the active window; both zero until
	// the amendment is activated.
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	// EndedAt, EndedBy and EndReason say how a final state was reached.
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndedBy   string    `json:"ended_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`

	RequiredApprovals int          `json:"required_approvals"`
	Approvals         []Approval   `json:"approvals,omitempty"`
	Extensions        []*Extension `json:"extensions,omitempty"`
}

// Clone returns a deep copy, so a transition never mutates a value that a
// store or a subscriber still holds.
func (a *Amendment) Clone() *Amendment {
	if a == nil {
		return nil
	}
	c := *a
	c.Approvals = slices.Clone(a.Approvals)
	c.Extensions = make([]*Extension, len(a.Extensions))
	for i, e := range a.Extensions {
		ec := *e
		ec.Approvals = slices.Clone(e.Approvals)
		c.Extensions[i] = &ec
	}
	if a.Extensions == nil {
		c.Extensions = nil
	}
	return &c
}

// PendingExtension returns the extension waiting for approval, or nil.
func (a *Amendment) PendingExtension() *Extension {
	if n := len(a.Extensions); n > 0 {
		e := a.Extensions[n-1]
		if e.Applied.IsZero() && e.Denied.IsZero() {
			return e
		}
	}
	return nil
}

// ActiveAt reports whether the amendment grants access at t: it is active
// and t is inside its window. Callers that gate access use this, not State
// alone, so an amendment whose expiry has passed but whose expired
// transition has not been written yet still grants nothing (fail closed).
func (a *Amendment) ActiveAt(t time.Time) bool {
	return a.State == Active && !t.Before(a.ActivatedAt) && t.Before(a.ExpiresAt)
}

// ShortID is the first eight characters of the ID, for messages.
func (a *Amendment) ShortID() string {
	if len(a.ID) > 8 {
		return a.ID[:8]
	}
	return a.ID
}

// Filter selects amendments in List. Zero fields match everything.
type Filter struct {
	States    []State
	Requester string
	Target    string
	// IDPrefix keeps amendments whose ID starts with it (short IDs).
	IDPrefix string
	// Limit caps the number returned, newest first; 0 means no limit.
	Limit int
}

// Match reports whether a passes the filter (used by stores that filter in
// memory and by tests).
func (f Filter) Match(a *Amendment) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, a.State) {
		return false
	}
	if f.Requester != "" && f.Requester != a.Requester {
		return false
	}
	if f.Target != "" && f.Target != a.Resource.Target {
		return false
	}
	if !strings.HasPrefix(a.ID, f.IDPrefix) {
		return false
	}
	return true
}
