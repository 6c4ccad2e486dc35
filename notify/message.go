package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jitproxy/jitproxy/amendment"
)

// maxQuoted caps how much of a person's free text (a reason, a comment) a
// message sentence repeats; the JSON payload carries all of it.
const maxQuoted = 300

// message is what a notification says to a person: one sentence, and what
// to do next if anything.
type message struct {
	sentence string // ends with a period
	action   string // e.g. "Approve"; empty means nothing to do
	command  string // the command that does it, e.g. "jitproxy approve 7f3a9c01"
}

// text is the message as plain text.
func (m message) text() string {
	if m.action == "" {
		return m.sentence
	}
	return m.sentence + " " + m.action + ": " + m.command
}

// describe says what c means for people, e.g. "alice@example.com requests
// ubuntu@web-1 for 2h: deploy hotfix (OPS-12). Approve: jitproxy approve
// 7f3a9c01". now is when the message is written (for "expires in").
func describe(c amendment.Change, now time.Time) message {
	a := c.After
	who, res, id := a.Requester, a.Resource.String(), a.ShortID()
	switch c.Event {
	case amendment.EventRequested:
		s := fmt.Sprintf("%s requests %s for %s", who, res, amendment.FormatDuration(a.Duration))
		if !a.StartAt.IsZero() {
			s += " from " + clock(a.StartAt)
		}
		m := message{sentence: s + because(a.Reason, a.Ticket) + "."}
		if a.RequiredApprovals > 0 {
			m.action, m.command = "Approve", "jitproxy approve "+id
		}
		return m
	case amendment.EventApproved:
		s := fmt.Sprintf("%s approved %s's request %s for %s (%s)", c.Actor, who, id, res, amendment.FormatDuration(a.Duration))
		if !a.StartAt.IsZero() {
			s += ", from " + clock(a.StartAt)
		}
		return message{sentence: s + because(c.Reason, "") + "."}
	case amendment.EventDenied:
		return message{sentence: fmt.Sprintf("%s denied %s's request %s for %s%s.", c.Actor, who, id, res, because(c.Reason, ""))}
	case amendment.EventRevoked:
		if c.Actor == who {
			return message{sentence: fmt.Sprintf("%s gave back access %s to %s%s.", who, id, res, because(c.Reason, ""))}
		}
		return message{sentence: fmt.Sprintf("%s revoked %s's access %s to %s%s.", c.Actor, who, id, res, because(c.Reason, ""))}
	case EventExpiring:
		return message{
			sentence: fmt.Sprintf("%s's access %s to %s expires in %s, at %s.", who, id, res, amendment.FormatDuration(roughly(a.ExpiresAt.Sub(now))), clock(a.ExpiresAt)),
			action:   "Extend",
			command:  "jitproxy extend " + id + " --for 30m --reason ...",
		}
	case amendment.EventExtended:
		return message{sentence: fmt.Sprintf("%s's access %s to %s now lasts until %s (extended by %s)%s.", who, id, res, clock(a.ExpiresAt), c.Actor, because(c.Reason, ""))}
	case amendment.EventActivated:
		return message{sentence: fmt.Sprintf("%s's access %s to %s is active until %s.", who, id, res, clock(a.ExpiresAt))}
	case amendment.EventExpired:
		return message{sentence: fmt.Sprintf("%s's access %s to %s has expired.", who, id, res)}
	}
	return message{sentence: fmt.Sprintf("Amendment %s of %s for %s: %s.", id, who, res, strings.TrimPrefix(c.Event, "amendment."))}
}

// because renders a reason and a ticket as the end of a sentence:
// ": deploy hotfix (OPS-12)", ": deploy hotfix", " (OPS-12)" or "".
func because(reason, ticket string) string {
	var s string
	if r := quote(reason); r != "" {
		s = ": " + r
	}
	if t := quote(ticket); t != "" {
		s += " (" + t + ")"
	}
	return s
}

// quote makes free text fit inside one sentence: one line, no trailing
// period, at most maxQuoted bytes.
func quote(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.TrimRight(s, ".")
	if len(s) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// clock writes an instant for people, unambiguously: 2026-11-29 14:00 UTC.
func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// roughly rounds a time left to what a person needs: minutes, or seconds
// under a minute.
func roughly(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Minute)
	}
	return max(d.Round(time.Second), time.Second)
}
