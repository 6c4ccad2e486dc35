package notify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// lifecycle is one change of every reported kind but expiring, in an order
// a single amendment could (mostly) go through.
func lifecycle() []amendment.Change {
	req := requested()
	appr := approved(req)
	act := activated(appr, appr.At.Add(2*time.Hour))
	ext := extended(act, time.Hour)
	return []amendment.Change{
		req,
		appr,
		ended(req, amendment.EventDenied, amendment.Denied, "bob@example.com", "not during the freeze"),
		act,
		ext,
		ended(ext, amendment.EventRevoked, amendment.Revoked, "carol@example.com", "incident over"),
		ended(ext, amendment.EventExpired, amendment.Expired, amendment.SystemActor, "expired"),
	}
}

func TestPayloadsGolden(t *testing.T) {
	all := []string{Requested, Approved, Denied, Revoked, Expiring, Extended, Activated, Expired}
	tests := []struct {
		name   string
		format string
		golden string
	}{
		{"json", "", "payloads.json"},
		{"slack", "slack", "payloads.slack.json"},
	}
	changes := lifecycle()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			_, ch := startChan(t, Config{
				Webhooks:  []Webhook{{URL: rc.URL + "/hook", Format: tt.format, Events: all}},
				PublicURL: "https://jitproxy.example.com/",
			})
			send(t, ch, changes...)
			got := rc.wait(t, len(changes), 10*time.Second)
			var out bytes.Buffer
			out.WriteString("[\n")
			for i, d := range got {
				if ct := d.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("request %d: Content-Type %q; want application/json", i, ct)
				}
				if ev := d.header.Get("X-Jitproxy-Event"); ev != changes[i].Event {
					t.Errorf("request %d: X-Jitproxy-Event %q; want %q", i, ev, changes[i].Event)
				}
				out.WriteString("  ")
				if err := json.Indent(&out, d.body, "  ", "  "); err != nil {
					t.Fatalf("request %d: body is not JSON: %v: %s", i, err, d.body)
				}
				if i < len(got)-1 {
					out.WriteString(",")
				}
				out.WriteString("\n")
			}
			out.WriteString("]\n")
			golden(t, tt.golden, out.Bytes())
		})
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("payloads differ from %s (go test -update rewrites it)\ngot:\n%s", path, got)
	}
}

func TestEventsFilter(t *testing.T) {
	tests := []struct {
		name   string
		events []string
		want   []string
	}{
		{"default", nil, []string{amendment.EventRequested, amendment.EventApproved, amendment.EventDenied, amendment.EventRevoked}},
		{"approved only", []string{"approved"}, []string{amendment.EventApproved}},
		{"time made", []string{"activated", "extended", "expired"}, []string{amendment.EventActivated, amendment.EventExtended, amendment.EventExpired}},
	}
	var hooks []Webhook
	var receivers []*receiver
	for _, tt := range tests {
		rc := newReceiver(t, nil)
		receivers = append(receivers, rc)
		hooks = append(hooks, Webhook{URL: rc.URL, Events: tt.events})
	}
	n, ch := startChan(t, Config{Webhooks: hooks})
	req := requested()
	unreported := []amendment.Change{
		next(req, amendment.EventApprovalAdded, "bob@example.com", "", base, nil),
		ended(req, amendment.EventWithdrawn, amendment.Withdrawn, "alice@example.com", "not needed"),
	}
	send(t, ch, unreported...)
	send(t, ch, lifecycle()...)
	total := 0
	for _, tt := range tests {
		total += len(tt.want)
	}
	eventually(t, 10*time.Second, "not every notification was sent", func() bool { return n.Stats().Sent >= uint64(total) })
	time.Sleep(100 * time.Millisecond) // room for one too many
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range receivers[i].all() {
				got = append(got, d.event(t))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
	if s := n.Stats(); s.Sent != uint64(total) || s.Failed != 0 || s.Dropped != 0 {
		t.Errorf("Stats: got %+v; want %d sent, none failed or dropped", s, total)
	}
}

func TestSignature(t *testing.T) {
	const secret = "s3cret-for-hmac"
	signed := newReceiver(t, nil)
	unsigned := newReceiver(t, nil)
	_, ch := startChan(t, Config{Webhooks: []Webhook{
		{URL: signed.URL, Secret: secret},
		{URL: unsigned.URL, Format: "slack"},
	}})
	send(t, ch, requested())
	d := signed.wait(t, 1, 10*time.Second)[0]
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(d.body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if got := d.header.Get("X-Jitproxy-Signature"); got != want {
		t.Errorf("X-Jitproxy-Signature: got %q; want %q", got, want)
	}
	if got := Sign([]byte(secret), d.body); got != want {
		t.Errorf("Sign: got %q; want %q", got, want)
	}
	if got := unsigned.wait(t, 1, 10*time.Second)[0].header.Values("X-Jitproxy-Signature"); len(got) != 0 {
		t.Errorf("webhook without a secret: got signature %q; want none", got)
	}
	if id := d.header.Get("X-Jitproxy-Delivery"); len(id) < 16 {
		t.Errorf("X-Jitproxy-Delivery: got %q; want a random ID", id)
	}
}

func TestDescribe(t *testing.T) {
	req := requested()
	act := activated(approved(req), base.Add(2*time.Hour+5*time.Minute))
	pg := requested()
	pg.After.Resource = amendment.Resource{Target: "app-db", Kind: amendment.KindPostgres, Role: "app_ro", Database: "app"}
	pg.After.Reason, pg.After.Ticket, pg.After.RequiredApprovals = "look\ninto   the slow query.", "", 0
	pg.After.StartAt = base.Add(24 * time.Hour)
	noWhy := approved(req)
	noWhy.Reason = ""
	tests := []struct {
		name string
		c    amendment.Change
		now  time.Time
		want string
	}{
		{"requested", req, base, "alice@example.com requests ubuntu@web-1 for 2h: deploy hotfix (OPS-12). Approve: jitproxy approve 7f3a9c01"},
		{"requested by policy, scheduled", pg, base, "alice@example.com requests app_ro@app-db/app for 2h from 2026-11-30 12:00 UTC: look into the slow query."},
		{"approved", approved(req), base, "bob@example.com approved alice@example.com's request 7f3a9c01 for ubuntu@web-1 (2h): go ahead."},
		{"approved without comment", noWhy, base, "bob@example.com approved alice@example.com's request 7f3a9c01 for ubuntu@web-1 (2h)."},
		{"denied", ended(req, amendment.EventDenied, amendment.Denied, "bob@example.com", "not during the freeze"), base, "bob@example.com denied alice@example.com's request 7f3a9c01 for ubuntu@web-1: not during the freeze."},
		{"revoked", ended(act, amendment.EventRevoked, amendment.Revoked, "carol@example.com", "incident over."), base, "carol@example.com revoked alice@example.com's access 7f3a9c01 to ubuntu@web-1: incident over."},
		{"given back", ended(act, amendment.EventRevoked, amendment.Revoked, "alice@example.com", "done"), base, "alice@example.com gave back access 7f3a9c01 to ubuntu@web-1: done."},
		{"expiring", amendment.Change{Event: EventExpiring, After: act.After}, base.Add(1*time.Hour + 55*time.Minute + 10*time.Second), "alice@example.com's access 7f3a9c01 to ubuntu@web-1 expires in 10m, at 2026-11-29 14:05 UTC. Extend: jitproxy extend 7f3a9c01 --for 30m --reason ..."},
		{"expiring in seconds", amendment.Change{Event: EventExpiring, After: act.After}, base.Add(2*time.Hour + 4*time.Minute + 30*time.Second), "alice@example.com's access 7f3a9c01 to ubuntu@web-1 expires in 30s, at 2026-11-29 14:05 UTC. Extend: jitproxy extend 7f3a9c01 --for 30m --reason ..."},
		{"extended", extended(act, time.Hour), base, "alice@example.com's access 7f3a9c01 to ubuntu@web-1 now lasts until 2026-11-29 15:05 UTC (extended by alice@example.com): need more time."},
		{"activated", act, base, "alice@example.com's access 7f3a9c01 to ubuntu@web-1 is active until 2026-11-29 14:05 UTC."},
		{"expired", ended(act, amendment.EventExpired, amendment.Expired, amendment.SystemActor, "expired"), base, "alice@example.com's access 7f3a9c01 to ubuntu@web-1 has expired."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(tt.c, tt.now).text(); got != tt.want {
				t.Errorf("got  %q;\nwant %q", got, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("é", maxQuoted) // two bytes each
	tests := []struct {
		name, in, want string
	}{
		{"plain", "deploy hotfix", "deploy hotfix"},
		{"lines and spaces", "  deploy\n\thotfix  ", "deploy hotfix"},
		{"trailing periods", "done...", "done"},
		{"long, cut on a rune", long, strings.Repeat("é", maxQuoted/2) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quote(tt.in); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestSlackEscapes(t *testing.T) {
	c := requested()
	c.After.Reason = "<!channel> & <https://evil.example|click>"
	n, err := New(Config{PublicURL: "https://jitproxy.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := n.render(FormatSlack, c, base)
	if err != nil {
		t.Fatal(err)
	}
	var p slackPayload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	wantText := "alice@example.com requests ubuntu@web-1 for 2h: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; (OPS-12). Approve: jitproxy approve 7f3a9c01"
	if p.Text != wantText {
		t.Errorf("text: got %q; want %q", p.Text, wantText)
	}
	if len(p.Blocks) != 2 {
		t.Fatalf("got %d blocks; want 2", len(p.Blocks))
	}
	if got := p.Blocks[0].Text.Text; strings.ContainsAny(strings.ReplaceAll(got, "&lt;", ""), "<>") {
		t.Errorf("section %q lets < or > through", got)
	}
	if got, want := p.Blocks[1].Elements[0].Text, "<https://jitproxy.example.com/amendments/7f3a9c01d2e4b5a6|Amendment 7f3a9c01>"; got != want {
		t.Errorf("link: got %q; want %q", got, want)
	}
}
