package api

import (
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// Amendment is an amendment as the API shows it: the resource flattened,
// durations written the way people write them ("2h"), times in UTC, and
// times that have not happened omitted.
type Amendment struct {
	ID                string               `json:"id"`
	ShortID           string               `json:"short_id"`
	Version           int64                `json:"version"`
	State             amendment.State      `json:"state"`
	Requester         string               `json:"requester"`
	Rule              string               `json:"rule"`
	Resource          string               `json:"resource"` // as people write it: ubuntu@web-1, app_ro@app-db/app
	Target            string               `json:"target"`
	Kind              amendment.TargetKind `json:"kind"`
	Login             string               `json:"login,omitempty"`
	Role              string               `json:"role,omitempty"`
	Database          string               `json:"database,omitempty"`
	PortForwarding    bool                 `json:"port_forwarding"`
	ReadOnly          bool                 `json:"read_only"`
	Reason            string               `json:"reason"`
	Ticket            string               `json:"ticket,omitempty"`
	Duration          string               `json:"duration"`
	CreatedAt         time.Time            `json:"created_at"`
	UpdatedAt         time.Time            `json:"updated_at"`
	StartAt           time.Time            `json:"start_at,omitzero"`
	RequestExpiresAt  time.Time            `json:"request_expires_at,omitzero"`
	ActivatedAt       time.Time            `json:"activated_at,omitzero"`
	ExpiresAt         time.Time            `json:"expires_at,omitzero"`
	EndedAt           time.Time            `json:"ended_at,omitzero"`
	EndedBy           string               `json:"ended_by,omitempty"`
	EndReason         string               `json:"end_reason,omitempty"`
	RequiredApprovals int                  `json:"required_approvals"`
	Approvals         []Approval           `json:"approvals"`
	Extensions        []Extension          `json:"extensions"`
	// TimeLeft is set by whoami only: until expiry for an active
	// amendment, the whole duration for one that has not started.
	TimeLeft string `json:"time_left,omitempty"`
}

// Approval is one approver's yes.
type Approval struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Extension is a request to move an active amendment's expiry.
type Extension struct {
	Duration    string     `json:"duration"`
	Reason      string     `json:"reason"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	Approvals   []Approval `json:"approvals"`
	// Pending is true while the extension waits for approval.
	Pending   bool      `json:"pending"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	DeniedAt  time.Time `json:"denied_at,omitzero"`
	DeniedBy  string    `json:"denied_by,omitempty"`
}

// AmendmentList is the answer to GET /api/v1/amendments.
type AmendmentList struct {
	Amendments []Amendment `json:"amendments"`
}

// NewAmendment is the wire form of a: what the API answers, what webhooks
// carry, and what the CLI reads.
func NewAmendment(a *amendment.Amendment) Amendment {
	v := Amendment{
		ID:                a.ID,
		ShortID:           a.ShortID(),
		Version:           a.Version,
		State:             a.State,
		Requester:         a.Requester,
		Rule:              a.Rule,
		Resource:          a.Resource.String(),
		Target:            a.Resource.Target,
		Kind:              a.Resource.Kind,
		Login:             a.Resource.Login,
		Role:              a.Resource.Role,
		Database:          a.Resource.Database,
		PortForwarding:    a.Resource.PortForwarding,
		ReadOnly:          a.Resource.ReadOnly,
		Reason:            a.Reason,
		Ticket:            a.Ticket,
		Duration:          amendment.FormatDuration(a.Duration),
		CreatedAt:         utc(a.CreatedAt),
		UpdatedAt:         utc(a.UpdatedAt),
		StartAt:           utc(a.StartAt),
		RequestExpiresAt:  utc(a.RequestExpiresAt),
		ActivatedAt:       utc(a.ActivatedAt),
		ExpiresAt:         utc(a.ExpiresAt),
		EndedAt:           utc(a.EndedAt),
		EndedBy:           a.EndedBy,
		EndReason:         a.EndReason,
		RequiredApprovals: a.RequiredApprovals,
		Approvals:         newApprovals(a.Approvals),
		Extensions:        make([]Extension, 0, len(a.Extensions)),
	}
	pending := a.PendingExtension()
	for _, e := range a.Extensions {
		v.Extensions = append(v.Extensions, Extension{
			Duration:    amendment.FormatDuration(e.Duration),
			Reason:      e.Reason,
			RequestedBy: e.RequestedBy,
			RequestedAt: utc(e.RequestedAt),
			Approvals:   newApprovals(e.Approvals),
			Pending:     e == pending,
			AppliedAt:   utc(e.Applied),
			DeniedAt:    utc(e.Denied),
			DeniedBy:    e.DeniedBy,
		})
	}
	return v
}

func newApprovals(l []amendment.Approval) []Approval {
	out := make([]Approval, 0, len(l))
	for _, ap := range l {
		out = append(out, Approval{By: ap.By, At: utc(ap.At), Comment: ap.Comment})
	}
	return out
}

func newAmendments(l []*amendment.Amendment) []Amendment {
	out := make([]Amendment, 0, len(l))
	for _, a := range l {
		out = append(out, NewAmendment(a))
	}
	return out
}

// utc keeps the zero time zero (so omitzero omits it) and puts every other
// time in UTC.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
