package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Limits of delivery.
const (
	// maxBackoff caps the wait between attempts.
	maxBackoff = time.Minute
	// maxRetryAfter caps how long a Retry-After answer can make a webhook
	// wait; its queue keeps filling (and dropping its oldest) meanwhile.
	maxRetryAfter = 5 * time.Minute
	// maxLoggedAnswer is how much of a failed answer's body is logged.
	maxLoggedAnswer = 200
	// maxDrainedAnswer is how much of an answer's body is read so the
	// connection can be reused.
	maxDrainedAnswer = 64 << 10
)

// hook is one configured webhook: its settings, its queue and the worker
// that empties it. Only Run's goroutine pushes; only the worker pops.
type hook struct {
	index       int    // 1-based position in Config.Webhooks, for logs
	url         string // the full URL: never logged
	format      string
	events      []string
	secret      []byte
	timeout     time.Duration
	before      time.Duration
	maxAttempts int
	retryBase   time.Duration
	client      *http.Client
	now         func() time.Time
	log         zerolog.Logger // names the webhook by index, scheme and host
	stats       *counters
	q           *queue
}

// wants reports whether the webhook reports events named name.
func (h *hook) wants(name string) bool {
	for _, e := range h.events {
		if e == name {
			return true
		}
	}
	return false
}

// enqueue queues one notification without waiting; a full queue drops its
// oldest.
func (h *hook) enqueue(event, shortID string, body []byte) {
	x := notification{event: event, amendment: shortID, delivery: rand.Text(), body: body}
	if old, dropped := h.q.push(x); dropped {
		h.stats.dropped.Add(1)
		h.log.Warn().Str("event", old.event).Str("amendment", old.amendment).Int("queue_size", len(h.q.items)).
			Msg("webhook queue full: dropped the oldest notification")
	}
}

// run delivers queued notifications one at a time, in order, until ctx
// ends. Run starts it and waits for it.
func (h *hook) run(ctx context.Context) {
	for ctx.Err() == nil {
		x, ok := h.q.pop()
		if !ok {
			select {
			case <-ctx.Done():
			case <-h.q.ready:
			}
			continue
		}
		h.deliver(ctx, x)
	}
	if n := h.q.len(); n > 0 {
		h.log.Warn().Int("undelivered", n).Msg("stopping with notifications still queued")
	}
}

// deliver sends x, retrying what may succeed later, until it is answered,
// MaxAttempts are used up or ctx ends.
func (h *hook) deliver(ctx context.Context, x notification) {
	for attempt := 1; ; attempt++ {
		wait, retry, err := h.post(ctx, x)
		if err == nil {
			h.stats.sent.Add(1)
			h.log.Debug().Str("event", x.event).Str("amendment", x.amendment).Int("attempts", attempt).Msg("webhook notified")
			return
		}
		if ctx.Err() != nil {
			return // shutting down; the worker logs what is left
		}
		if !retry || attempt >= h.maxAttempts {
			h.stats.failed.Add(1)
			h.log.Error().Err(err).Str("event", x.event).Str("amendment", x.amendment).Int("attempts", attempt).
				Msg("webhook delivery failed; giving up")
			return
		}
		if wait <= 0 {
			wait = backoff(h.retryBase, attempt)
		}
		h.log.Warn().Err(err).Str("event", x.event).Str("amendment", x.amendment).Int("attempt", attempt).
			Dur("retry_in", wait).Msg("webhook delivery failed; will retry")
		if !sleep(ctx, wait) {
			return
		}
	}
}

// post makes one attempt. On failure it says whether to retry, and how long
// the webhook asked to wait (0: not said).
func (h *hook) post(ctx context.Context, x notification) (wait time.Duration, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(x.body))
	if err != nil {
		// The URL was validated in New; this cannot be fixed by retrying.
		return 0, false, fmt.Errorf("notify: build request: %w", redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jitproxy-notify")
	req.Header.Set("X-Jitproxy-Event", x.event)
	req.Header.Set("X-Jitproxy-Delivery", x.delivery)
	if len(h.secret) > 0 {
		req.Header.Set("X-Jitproxy-Signature", Sign(h.secret, x.body))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return 0, true, fmt.Errorf("notify: no answer within %s", h.timeout)
		}
		return 0, true, fmt.Errorf("notify: %w", redact(err))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxLoggedAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainedAnswer))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, false, nil
	}
	err = &statusError{Status: resp.Status, Body: strings.TrimSpace(string(head))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return retryAfter(resp.Header.Get("Retry-After"), h.now()), true, err
	case resp.StatusCode >= 500:
		return 0, true, err
	default:
		return 0, false, err
	}
}

// statusError is a webhook's answer other than 2xx.
type statusError struct {
	Status string // e.g. "500 Internal Server Error"
	Body   string // the start of the answer's body
}

func (e *statusError) Error() string {
	if e.Body == "" {
		return "notify: webhook answered " + e.Status
	}
	return fmt.Sprintf("notify: webhook answered %s: %q", e.Status, e.Body)
}

// redact strips the URL that net/http puts into its errors: it may carry
// credentials in its path or query.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// Sign returns the X-Jitproxy-Signature value for body: "sha256=" and the
// hex HMAC-SHA256 of body keyed with secret. A receiver recomputes it over
// the raw body and compares with hmac.Equal.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// backoff is the wait before attempt+1: base doubled per attempt, capped
// at maxBackoff, with jitter so many webhooks failing together do not
// retry together.
func backoff(base time.Duration, attempt int) time.Duration {
	d := maxBackoff
	if attempt-1 < 32 {
		if b := base << (attempt - 1); b > 0 && b < maxBackoff {
			d = b
		}
	}
	return d/2 + mathrand.N(d/2+1)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date) into a
// wait capped at maxRetryAfter; 0 means none was given.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(min(max(s, 0), int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// sleep waits d or until ctx ends; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
