package session

import (
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jitproxy/jitproxy/amendment"
)

// Sentinels for errors.Is. A cut's cause (an *Ended) matches ErrExpired or
// ErrRevoked; every refusal from Register (a *Refused) matches
// ErrNoActiveAmendment, and also ErrExpired or ErrRevoked when that is why.
var (
	ErrExpired           = errors.New("session: amendment expired")
	ErrRevoked           = errors.New("session: amendment revoked")
	ErrNoActiveAmendment = errors.New("session: no active amendment")
	// ErrClosed: the registry takes no new sessions (Run has returned, or
	// CutAll was called).
	ErrClosed = errors.New("session: registry closed")
	// ErrDone is the context cause of a session that ended normally
	// (through its done func).
	ErrDone = errors.New("session: ended")
)

// Ended says why a live session was cut. Its Error is the one line the
// person sees (in the SSH terminal, in psql's FATAL) and the audit trail
// records:
//
//	jitproxy: access to ubuntu@web-1 ended: amendment 7f3a9c01 expired
//	jitproxy: access to ubuntu@web-1 ended: amendment 7f3a9c01 revoked by bob@example.com: incident 42
//	jitproxy: access to ubuntu@web-1 ended: proxy shutting down
type Ended struct {
	// Amendment is the short id of the amendment the session rode on.
	Amendment string
	// Resource is what the session reached, e.g. ubuntu@web-1.
	Resource string
	// State is how the amendment ended: "expired" or "revoked". Empty
	// means the session was cut for Reason alone (a shutdown).
	State string
	// By and Reason are who ended the amendment and why (revocations).
	By, Reason string
	// At is when the amendment ended: its expiry, or the revoke's commit.
	At time.Time
}

func (e *Ended) Error() string {
	var b strings.Builder
	b.WriteString("jitproxy: access to ")
	b.WriteString(oneLine(e.Resource))
	b.WriteString(" ended: ")
	if e.Amendment == "" || e.State == "" {
		b.WriteString(oneLine(e.Reason))
		return b.String()
	}
	b.WriteString("amendment ")
	b.WriteString(oneLine(e.Amendment))
	b.WriteString(" ")
	b.WriteString(oneLine(e.State))
	if by := oneLine(e.By); by != "" {
		b.WriteString(" by ")
		b.WriteString(by)
	}
	if r := oneLine(e.Reason); r != "" {
		b.WriteString(": ")
		b.WriteString(r)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrExpired) and errors.Is(err, ErrRevoked) match
// on State.
func (e *Ended) Is(target error) bool {
	switch target {
	case ErrExpired:
		return e.State == string(amendment.Expired)
	case ErrRevoked:
		return e.State == string(amendment.Revoked)
	}
	return false
}

// Refused says why Register turned a session away before a byte was
// relayed, in words the person can act on:
//
//	jitproxy: no active amendment for ubuntu@web-1: amendment 7f3a9c01 is waiting for approval; see it with: jitproxy show 7f3a9c01
//
// When the amendment has ended, the line is its Ended's.
type Refused struct {
	// Resource is what the session asked for, e.g. ubuntu@web-1.
	Resource string
	// Amendment is the short id of the amendment named.
	Amendment string
	// Why is what is wrong with it, and what to do next.
	Why string
	// Ended is set when the amendment has expired or been revoked.
	Ended *Ended
}

func (e *Refused) Error() string {
	if e.Ended != nil {
		return e.Ended.Error()
	}
	return "jitproxy: no active amendment for " + oneLine(e.Resource) + ": amendment " + oneLine(e.Amendment) + " " + oneLine(e.Why)
}

// Is makes every refusal match ErrNoActiveAmendment.
func (e *Refused) Is(target error) bool { return target == ErrNoActiveAmendment }

// Unwrap returns the Ended, so errors.Is(err, ErrRevoked) and
// errors.As(err, **Ended) see through a refusal.
func (e *Refused) Unwrap() error {
	if e.Ended == nil {
		return nil
	}
	return e.Ended
}

// ended is why an amendment's sessions are cut: the cause every one of
// them gets (with its own Resource), the instant the cut latency counts
// from, and the metric label.
type ended struct {
	cause  Ended
	origin time.Time
	label  string
}

// endedOf says how a is over: revoked (by whom, why, at its commit), or
// expired (at its ExpiresAt, whether or not the expired row is written).
func endedOf(a *amendment.Amendment) ended {
	e := ended{cause: Ended{Amendment: a.ShortID(), Resource: a.Resource.String()}}
	switch a.State {
	case amendment.Active, amendment.Expired:
		e.cause.State = string(amendment.Expired)
		e.cause.At = a.ExpiresAt
	default:
		e.cause.State = string(a.State)
		e.cause.By, e.cause.Reason = a.EndedBy, a.EndReason
		e.cause.At = a.EndedAt
	}
	e.origin, e.label = e.cause.At, e.cause.State
	return e
}

// refusal is why a cannot carry a new session for resource at now; nil a
// means the amendment does not exist.
func refusal(id, resource, target string, a *amendment.Amendment, now time.Time) *Refused {
	short := (&amendment.Amendment{ID: id}).ShortID()
	r := &Refused{Resource: resource, Amendment: short}
	again := "; ask for access with: jitproxy request " + target + " ..."
	switch {
	case a == nil:
		r.Why = "does not exist" + again
	case a.State == amendment.Requested:
		r.Why = "is waiting for approval; see it with: jitproxy show " + short
	case a.State == amendment.Approved && !a.StartAt.IsZero():
		r.Why = "is approved from " + clock(a.StartAt) + "; connect again then"
	case a.State == amendment.Approved:
		r.Why = "is approved and starting; connect again in a moment"
	case a.State == amendment.Denied:
		r.Why = "was denied" + byReason(a.EndedBy, a.EndReason) + again
	case a.State == amendment.Withdrawn:
		r.Why = "was withdrawn" + byReason("", a.EndReason) + again
	case a.State == amendment.Active && now.Before(a.ActivatedAt):
		r.Why = "starts at " + clock(a.ActivatedAt) + "; connect again then"
	default: // expired or revoked, or active with its expiry passed
		e := endedOf(a).cause
		e.Resource = resource
		r.Ended = &e
	}
	return r
}

// refusalLabel is the metric label of a refusal.
func refusalLabel(r *Refused, a *amendment.Amendment) string {
	switch {
	case a == nil:
		return "not_found"
	case r.Ended != nil:
		return r.Ended.State
	case a.State == amendment.Active:
		return "not_started"
	}
	return string(a.State)
}

func byReason(by, reason string) string {
	var s string
	if by != "" {
		s = " by " + by
	}
	if reason != "" {
		s += ": " + reason
	}
	return s
}

// clock writes an instant for people: 2026-11-29 14:00 UTC.
func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// maxText caps how much free text (a revoke reason) one line repeats.
const maxText = 300

// oneLine makes text safe to print as part of one line in a person's
// terminal: control characters (escape sequences, newlines) become spaces,
// runs of space collapse, and it is cut at maxText bytes.
func oneLine(s string) string {
	clean := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	clean = strings.Join(strings.Fields(clean), " ")
	if len(clean) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(clean[cut]) {
			cut--
		}
		clean = clean[:cut] + "…"
	}
	return clean
}
