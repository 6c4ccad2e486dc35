package notify

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
)

// payload is the generic JSON body (Format "json"). Its fields are a
// contract with receivers: add, never rename.
type payload struct {
	// Event is the event type, e.g. amendment.requested.
	Event     string        `json:"event"`
	Amendment api.Amendment `json:"amendment"` // the API's wire form
	// Actor is who made the change; jitproxy for what time does.
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
	// Time is when the change happened (for expiring: when the warning
	// was written).
	Time time.Time `json:"time"`
	// Text is the message as one plain-text sentence for people.
	Text string `json:"text"`
	// URL opens the amendment in the web UI; absent without PublicURL.
	URL string `json:"url,omitempty"`
}

// slackPayload is the Slack-compatible body (Format "slack"): text for
// notifications and clients without blocks, blocks for the rest.
type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// render builds the body of c in format. now is when it is written.
func (n *Notifier) render(format string, c amendment.Change, now time.Time) ([]byte, error) {
	m := describe(c, now)
	link := ""
	if n.publicURL != "" {
		link = n.publicURL + "/amendments/" + c.After.ID
	}
	var v any = payload{
		Event:     c.Event,
		Amendment: api.NewAmendment(c.After),
		Actor:     c.Actor,
		Reason:    c.Reason,
		Time:      c.At.UTC(),
		Text:      m.text(),
		URL:       link,
	}
	if format == FormatSlack {
		v = slackBody(m, c.After, link)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // Slack links are <url|label>; keep bodies readable
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// slackBody lays m out for Slack: the sentence, the command to run, and a
// link to the amendment. Everything from people is escaped, so a reason
// cannot mention @channel or forge a link.
func slackBody(m message, a *amendment.Amendment, link string) slackPayload {
	text := slackEscape(m.text())
	section := slackEscape(m.sentence)
	if m.action != "" {
		section += " " + m.action + ": `" + slackEscape(m.command) + "`"
	}
	p := slackPayload{
		Text:   text,
		Blocks: []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: section}}},
	}
	footer := "Amendment " + slackEscape(a.ShortID())
	if link != "" {
		footer = "<" + slackEscape(link) + "|" + footer + ">"
	}
	p.Blocks = append(p.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: footer}}})
	return p
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to
// as control sequences.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
