// Package notify tells people about amendments through webhooks: request
// created, approved, denied, revoked, and expiring soon. Delivery is in the
// background with retries; it never blocks or fails the change it reports.
// It does not decide anything: it only reports changes the store committed.
package notify

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/rs/zerolog"
)

// EventExpiring is the event type of the warning that an active amendment
// is about to expire. It is not an amendment transition (nothing changes),
// so the amendment package does not name it.
const EventExpiring = "amendment.expiring"

// The names Webhook.Events accepts.
const (
	Requested = "requested"
	Approved  = "approved"
	Denied    = "denied"
	Revoked   = "revoked"
	Expiring  = "expiring"
	Extended  = "extended"
	Activated = "activated"
	Expired   = "expired"
)

// The webhook payload formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// Defaults for zero Config and Webhook fields.
const (
	defaultQueueSize      = 1000
	defaultTimeout        = 5 * time.Second
	defaultExpiringBefore = 10 * time.Minute
	defaultMaxAttempts    = 5
	defaultRetryBase      = time.Second
)

// eventName maps an amendment event type to the name a webhook subscribes
// to, or "" for transitions that notify does not report (an approval that
// is not yet enough, a withdrawn request, extension bookkeeping).
func eventName(event string) string {
	switch event {
	case amendment.EventRequested:
		return Requested
	case amendment.EventApproved:
		return Approved
	case amendment.EventDenied:
		return Denied
	case amendment.EventRevoked:
		return Revoked
	case EventExpiring:
		return Expiring
	case amendment.EventExtended:
		return Extended
	case amendment.EventActivated:
		return Activated
	case amendment.EventExpired:
		return Expired
	}
	return ""
}

// validName reports whether name is one Webhook.Events accepts.
func validName(name string) bool {
	switch name {
	case Requested, Approved, Denied, Revoked, Expiring, Extended, Activated, Expired:
		return true
	}
	return false
}

// Config configures a Notifier.
type Config struct {
	// Webhooks are the endpoints to notify; none means Run only waits for
	// its context to end.
	Webhooks []Webhook
	// Logger receives delivery failures, drops and give-ups; the zero
	// Logger logs nothing. Lines name a webhook by scheme and host only.
	Logger zerolog.Logger
	// Now is the clock for expiry warnings and message times; nil means
	// time.Now.
	Now func() time.Time
	// Client sends the requests; nil means a client of the notifier's own
	// that does not follow redirects and uses no proxy. Either way each
	// attempt is bounded by its webhook's Timeout.
	Client *http.Client
	// QueueSize bounds the notifications waiting for each webhook; when a
	// queue is full the oldest is dropped. 0 means 1000.
	QueueSize int
	// PublicURL is the base of links in messages, e.g.
	// https://jitproxy.example.com; empty means messages carry no link.
	PublicURL string
	// RetryBase is the first wait before retrying a failed delivery or a
	// failed reload of active amendments; each retry doubles it (with
	// jitter, at most a minute). 0 means 1s.
	RetryBase time.Duration
}

// Webhook is one endpoint and what it wants to hear.
type Webhook struct {
	// URL is where notifications are POSTed (http or https). It may carry
	// credentials (a Slack webhook path, a query token): it is never logged.
	URL string
	// Format is the payload format: "json" (the default for "") or "slack"
	// (also understood by Mattermost and Rocket.Chat).
	Format string
	// Events are the names to report: requested, approved, denied, revoked,
	// expiring, extended, activated, expired. Empty means requested,
	// approved, denied, revoked and expiring.
	Events []string
	// Secret, when set, signs each body: header X-Jitproxy-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body keyed with Secret.
	// Empty means unsigned.
	Secret string
	// Timeout bounds one attempt, from dial to the end of the answer; 0
	// means 5s.
	Timeout time.Duration
	// ExpiringBefore is how long before an active amendment expires the
	// expiring warning is sent; 0 means 10m.
	ExpiringBefore time.Duration
	// MaxAttempts bounds the attempts per notification; 0 means 5.
	MaxAttempts int
}

// defaultEvents is what a webhook with no Events hears.
func defaultEvents() []string { return []string{Requested, Approved, Denied, Revoked, Expiring} }

// Notifier reports amendment changes to webhooks. Create it with New and
// start it with Run.
type Notifier struct {
	hooks     []*hook
	log       zerolog.Logger
	now       func() time.Time
	publicURL string
	retryBase time.Duration
	stats     *counters
	running   atomic.Bool // set while Run runs
}

// Stats counts notifications since New, over all webhooks.
type Stats struct {
	// Sent were answered with a 2xx.
	Sent uint64
	// Failed were given up: an answer that retrying cannot fix (a 3xx or
	// a 4xx other than 429), or MaxAttempts used up.
	Failed uint64
	// Dropped were pushed out of a full queue before they were sent.
	Dropped uint64
	// Queued are waiting now.
	Queued int
}

// counters are the atomic totals behind Stats, shared by every webhook.
type counters struct {
	sent, failed, dropped atomic.Uint64
}

// New validates cfg and returns a Notifier.
func New(cfg Config) (*Notifier, error) {
	if cfg.QueueSize < 0 {
		return nil, errors.New("notify: Config.QueueSize is negative")
	}
	if cfg.RetryBase < 0 {
		return nil, errors.New("notify: Config.RetryBase is negative")
	}
	n := &Notifier{
		log:       cfg.Logger,
		now:       cfg.Now,
		retryBase: cfg.RetryBase,
		stats:     &counters{},
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.retryBase == 0 {
		n.retryBase = defaultRetryBase
	}
	if cfg.PublicURL != "" {
		if _, err := parseURL(cfg.PublicURL); err != nil {
			return nil, fmt.Errorf("notify: Config.PublicURL: %w", err)
		}
		n.publicURL = strings.TrimRight(cfg.PublicURL, "/")
	}
	queueSize := cfg.QueueSize
	if queueSize == 0 {
		queueSize = defaultQueueSize
	}
	client := cfg.Client
	if client == nil {
		client = defaultClient()
	}
	for i, w := range cfg.Webhooks {
		h, err := newHook(i, w, client, queueSize, n)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook %d: %w", i+1, err)
		}
		n.hooks = append(n.hooks, h)
	}
	return n, nil
}

// newHook validates w and fills in its defaults.
func newHook(i int, w Webhook, client *http.Client, queueSize int, n *Notifier) (*hook, error) {
	u, err := parseURL(w.URL)
	if err != nil {
		return nil, err
	}
	h := &hook{
		index:       i + 1,
		url:         w.URL,
		format:      w.Format,
		secret:      []byte(w.Secret),
		timeout:     w.Timeout,
		before:      w.ExpiringBefore,
		maxAttempts: w.MaxAttempts,
		retryBase:   n.retryBase,
		client:      client,
		now:         n.now,
		stats:       n.stats,
		q:           newQueue(queueSize),
	}
	h.log = n.log.With().Int("webhook", h.index).Str("webhook_host", u.Scheme+"://"+u.Host).Logger()
	switch h.format {
	case "":
		h.format = FormatJSON
	case FormatJSON, FormatSlack:
	default:
		return nil, fmt.Errorf("unknown format %q: use json or slack", w.Format)
	}
	events := w.Events
	if len(events) == 0 {
		events = defaultEvents()
	}
	for _, e := range events {
		if !validName(e) {
			return nil, fmt.Errorf("unknown event %q: use requested, approved, denied, revoked, expiring, extended, activated or expired", e)
		}
		if !slices.Contains(h.events, e) {
			h.events = append(h.events, e)
		}
	}
	switch {
	case h.timeout < 0:
		return nil, errors.New("the Timeout is negative")
	case h.before < 0:
		return nil, errors.New("the ExpiringBefore is negative")
	case h.maxAttempts < 0:
		return nil, errors.New("the MaxAttempts is negative")
	}
	if h.timeout == 0 {
		h.timeout = defaultTimeout
	}
	if h.before == 0 {
		h.before = defaultExpiringBefore
	}
	if h.maxAttempts == 0 {
		h.maxAttempts = defaultMaxAttempts
	}
	return h, nil
}

// parseURL accepts absolute http and https URLs. Its errors never repeat
// the URL, which may carry credentials.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("the URL does not parse: write it as http://host/path or https://host/path")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("the URL must start with http:// or https://, not %q", u.Scheme+":")
	}
	if u.Host == "" {
		return nil, errors.New("the URL has no host: write it as http://host/path or https://host/path")
	}
	return u, nil
}

// defaultClient is the client used when Config.Client is nil: redirects
// are answers, not instructions (a webhook that moved is misconfigured,
// and a redirect would carry the signature elsewhere), and no proxy is
// read from the environment (cmd/jitproxy passes a Client for that).
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Stats returns the counters so far.
func (n *Notifier) Stats() Stats {
	s := Stats{
		Sent:    n.stats.sent.Load(),
		Failed:  n.stats.failed.Load(),
		Dropped: n.stats.dropped.Load(),
	}
	for _, h := range n.hooks {
		s.Queued += h.q.len()
	}
	return s
}
