package amendment

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// SystemActor is the actor of transitions that time makes (activation,
// expiry, request TTL).
const SystemActor = "jitproxy"

// Limits on free text, so one request cannot bloat the store.
const (
	maxReasonLen = 1000
	maxTicketLen = 200
	maxNameLen   = 200
	// maxRetries bounds compare-and-set retries when others change the same
	// amendment at the same time.
	maxRetries = 50
)

// Config configures a Service.
type Config struct {
	Store    Store
	Contract *Contract
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewID returns a fresh amendment ID; nil means 16 random hex digits.
	NewID func() string
	// Logger receives one line per transition; the zero Logger logs nothing.
	Logger zerolog.Logger
	// MaxSleep caps how long Run waits between scans even when no deadline
	// is due, as a safety net for missed events; 0 means 30s.
	MaxSleep time.Duration
}

// Service runs the amendment lifecycle: it evaluates requests against the
// contract, authorizes every action, and writes each transition through the
// store as a compare-and-set with its audit row.
type Service struct {
	store    Store
	contract *Contract
	now      func() time.Time
	newID    func() string
	log      zerolog.Logger
	maxSleep time.Duration
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("amendment: Config.Store is nil")
	}
	if cfg.Contract == nil {
		return nil, errors.New("amendment: Config.Contract is nil")
	}
	s := &Service{store: cfg.Store, contract: cfg.Contract, now: cfg.Now, newID: cfg.NewID, log: cfg.Logger, maxSleep: cfg.MaxSleep}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = randomID
	}
	if s.maxSleep <= 0 {
		s.maxSleep = 30 * time.Second
	}
	return s, nil
}

func randomID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("amendment: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Contract returns the contract the service enforces.
func (s *Service) Contract() *Contract { return s.contract }

// clock returns the current time as stored: UTC, microsecond precision (the
// finest every backend keeps).
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Request evaluates req for who against the contract and stores a new
// amendment. Under a rule that needs no approvals it is approved (and, if
// its start has come, activated) at once, each step its own audit row.
func (s *Service) Request(ctx context.Context, who Identity, req Request) (*Amendment, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	now := s.clock()
	rule, res, err := s.contract.Evaluate(who, req, now)
	if err != nil {
		return nil, err
	}
	a := &Amendment{
		ID:                s.newID(),
		Version:           1,
		State:             Requested,
		Requester:         who.Key(),
		Rule:              rule.Name,
		Resource:          res,
		Reason:            strings.TrimSpace(req.Reason),
		Ticket:            req.Ticket,
		Duration:          req.Duration,
		CreatedAt:         now,
		UpdatedAt:         now,
		StartAt:           req.StartAt.UTC().Truncate(time.Microsecond),
		RequestExpiresAt:  now.Add(rule.PendingTTL),
		RequiredApprovals: rule.Approvals,
	}
	if req.StartAt.IsZero() {
		a.StartAt = time.Time{}
	}
	c := Change{Event: EventRequested, Actor: a.Requester, At: now, Reason: a.Reason, After: a}
	if err := s.store.Create(ctx, c); err != nil {
		return nil, fmt.Errorf("amendment: create: %w", err)
	}
	s.logChange(c)
	if rule.Approvals > 0 {
		return a, nil
	}
	return s.update(ctx, a.ID, func(a *Amendment, now time.Time) (Change, error) {
		a.Approvals = append(a.Approvals, Approval{By: policyActor(rule.Name), At: now, Comment: "approved by policy"})
		a.State = Approved
		return Change{Event: EventApproved, Actor: policyActor(rule.Name), Reason: "rule requires no approval"}, nil
	})
}

func policyActor(rule string) string { return "policy:" + rule }

func validateRequest(req Request) error {
	for _, f := range []struct{ name, v string }{{"target", req.Target}, {"login", req.Login}, {"role", req.Role}, {"database", req.Database}} {
		if len(f.v) > maxNameLen || !utf8.ValidString(f.v) || strings.ContainsAny(f.v, "\x00\r\n") {
			return Errorf(CodeBadRequest, "%s is not a valid name (at most %d characters, no control characters)", f.name, maxNameLen)
		}
	}
	if req.Target == "" {
		return Errorf(CodeBadRequest, "say which target you need access to")
	}
	if len(req.Reason) > maxReasonLen || !utf8.ValidString(req.Reason) {
		return Errorf(CodeBadRequest, "the reason is too long: at most %d characters", maxReasonLen)
	}
	if len(req.Ticket) > maxTicketLen || !utf8.ValidString(req.Ticket) {
		return Errorf(CodeBadRequest, "the ticket is too long: at most %d characters", maxTicketLen)
	}
	if req.Duration < 0 || req.Duration > MaxDuration {
		return Errorf(CodeBadRequest, "the duration must be positive and at most 366d")
	}
	return nil
}

// Approve records who's approval of amendment id (or of its pending
// extension). Enough approvals approve it, and it activates at once unless
// its start is scheduled.
func (s *Service) Approve(ctx context.Context, who Identity, id, comment string) (*Amendment, error) {
	if len(comment) > maxReasonLen {
		return nil, Errorf(CodeBadRequest, "the comment is too long: at most %d characters", maxReasonLen)
	}
	return s.update(ctx, id, func(a *Amendment, now time.Time) (Change, error) {
		rule, err := s.approverRule(who, a, "approve")
		if err != nil {
			return Change{}, err
		}
		ap := Approval{By: who.Key(), At: now, Comment: comment}
		if ext := a.PendingExtension(); a.State == Active && ext != nil {
			if hasApproval(ext.Approvals, ap.By) {
				return Change{}, Errorf(CodeInvalidState, "you already approved the extension of amendment %s; it needs %d approval(s) from %s", a.ShortID(), rule.ExtensionApprovals, strings.Join(rule.ApproverGroups, ", "))
			}
			ext.Approvals = append(ext.Approvals, ap)
			if len(ext.Approvals) < rule.ExtensionApprovals {
				return Change{Event: EventExtensionApproval, Actor: ap.By, Reason: comment}, nil
			}
			if err := applyExtension(a, ext, rule, now); err != nil {
				return Change{}, err
			}
			return Change{Event: EventExtended, Actor: ap.By, Reason: ext.Reason}, nil
		}
		if err := checkTransition(a, Approved, "approve"); err != nil {
			return Change{}, err
		}
		if hasApproval(a.Approvals, ap.By) {
			return Change{}, Errorf(CodeInvalidState, "you already approved amendment %s; it needs %d approval(s) in all", a.ShortID(), a.RequiredApprovals)
		}
		a.Approvals = append(a.Approvals, ap)
		if len(a.Approvals) < a.RequiredApprovals {
			return Change{Event: EventApprovalAdded, Actor: ap.By, Reason: comment}, nil
		}
		a.State = Approved
		return Change{Event: EventApproved, Actor: ap.By, Reason: comment}, nil
	})
}

// Deny refuses a pending request, or the pending extension of an active
// amendment (which then stays active with its old expiry).
func (s *Service) Deny(ctx context.Context, who Identity, id, reason string) (*Amendment, error) {
	if err := checkReason(reason, "deny"); err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(a *Amendment, now time.Time) (Change, error) {
		if _, err := s.approverRule(who, a, "deny"); err != nil {
			return Change{}, err
		}
		if ext := a.PendingExtension(); a.State == Active && ext != nil {
			ext.Denied, ext.DeniedBy = now, who.Key()
			return Change{Event: EventExtensionDenied, Actor: who.Key(), Reason: reason}, nil
		}
		if err := checkTransition(a, Denied, "deny"); err != nil {
			return Change{}, err
		}
		end(a, Denied, now, who.Key(), reason)
		return Change{Event: EventDenied, Actor: who.Key(), Reason: reason}, nil
	})
}

// Revoke ends an approved or active amendment now. The requester (giving
// access back early), the rule's approvers and admins may revoke.
func (s *Service) Revoke(ctx context.Context, who Identity, id, reason string) (*Amendment, error) {
	if err := checkReason(reason, "revoke"); err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(a *Amendment, now time.Time) (Change, error) {
		if !s.canRevoke(who, a) {
			return Change{}, Errorf(CodeForbidden, "you may not revoke amendment %s: only its requester, its approvers and admins may", a.ShortID())
		}
		if err := checkTransition(a, Revoked, "revoke"); err != nil {
			return Change{}, err
		}
		end(a, Revoked, now, who.Key(), reason)
		return Change{Event: EventRevoked, Actor: who.Key(), Reason: reason}, nil
	})
}

// Withdraw cancels the requester's own pending request.
func (s *Service) Withdraw(ctx context.Context, who Identity, id, reason string) (*Amendment, error) {
	if len(reason) > maxReasonLen {
		return nil, Errorf(CodeBadRequest, "the reason is too long: at most %d characters", maxReasonLen)
	}
	return s.update(ctx, id, func(a *Amendment, now time.Time) (Change, error) {
		if a.Requester != who.Key() {
			return Change{}, Errorf(CodeForbidden, "only %s, who requested amendment %s, may withdraw it", a.Requester, a.ShortID())
		}
		if a.State == Approved || a.State == Active {
			return Change{}, Errorf(CodeInvalidState, "amendment %s is %s: give the access back with jitproxy revoke %s --reason ...", a.ShortID(), a.State, a.ShortID())
		}
		if err := checkTransition(a, Withdrawn, "withdraw"); err != nil {
			return Change{}, err
		}
		if reason == "" {
			reason = "withdrawn by the requester"
		}
		end(a, Withdrawn, now, who.Key(), reason)
		return Change{Event: EventWithdrawn, Actor: who.Key(), Reason: reason}, nil
	})
}

// Extend asks to move an active amendment's expiry by d. The whole window
// stays within the rule's maximum; under a rule that needs approval for
// extensions it waits for approvers, otherwise it applies at once.
func (s *Service) Extend(ctx context.Context, who Identity, id string, d time.Duration, reason string) (*Amendment, error) {
	if d <= 0 || d > MaxDuration {
		return nil, Errorf(CodeBadRequest, "the extension must be positive and at most 366d")
	}
	if len(reason) > maxReasonLen {
		return nil, Errorf(CodeBadRequest, "the reason is too long: at most %d characters", maxReasonLen)
	}
	return s.update(ctx, id, func(a *Amendment, now time.Time) (Change, error) {
		if a.Requester != who.Key() {
			return Change{}, Errorf(CodeForbidden, "only %s, who holds amendment %s, may extend it", a.Requester, a.ShortID())
		}
		if a.State != Active {
			return Change{}, Errorf(CodeInvalidState, "cannot extend amendment %s: it is %s, and only active amendments can be extended", a.ShortID(), a.State)
		}
		if a.PendingExtension() != nil {
			return Change{}, Errorf(CodeInvalidState, "amendment %s already has an extension waiting for approval", a.ShortID())
		}
		rule, ok := s.contract.Rule(a.Rule)
		if !ok {
			return Change{}, Errorf(CodePolicyViolation, "rule %q no longer exists in the contract, so amendment %s cannot be extended", a.Rule, a.ShortID())
		}
		if rule.RequireReason && strings.TrimSpace(reason) == "" {
			return Change{}, rule.violation("a reason is required: say why with --reason")
		}
		ext := &Extension{Duration: d, Reason: reason, RequestedBy: who.Key(), RequestedAt: now}
		if err := checkExtension(a, ext, rule); err != nil {
			return Change{}, err
		}
		a.Extensions = append(a.Extensions, ext)
		if rule.ExtensionApprovals > 0 {
			return Change{Event: EventExtensionRequested, Actor: who.Key(), Reason: reason}, nil
		}
		ext.Approvals = append(ext.Approvals, Approval{By: policyActor(rule.Name), At: now, Comment: "approved by policy"})
		if err := applyExtension(a, ext, rule, now); err != nil {
			return Change{}, err
		}
		return Change{Event: EventExtended, Actor: who.Key(), Reason: reason}, nil
	})
}

func checkExtension(a *Amendment, ext *Extension, rule *Rule) error {
	window := a.ExpiresAt.Add(ext.Duration).Sub(a.ActivatedAt)
	if window > rule.MaxDuration {
		left := max(rule.MaxDuration-a.ExpiresAt.Sub(a.ActivatedAt), 0)
		return rule.violation("extending by %s would make the amendment last %s, over the maximum %s (at most %s more)", FormatDuration(ext.Duration), FormatDuration(window), FormatDuration(rule.MaxDuration), FormatDuration(left))
	}
	return nil
}

func applyExtension(a *Amendment, ext *Extension, rule *Rule, now time.Time) error {
	if err := checkExtension(a, ext, rule); err != nil {
		return err
	}
	ext.Applied = now
	a.ExpiresAt = a.ExpiresAt.Add(ext.Duration)
	return nil
}

func hasApproval(l []Approval, by string) bool {
	for _, ap := range l {
		if ap.By == by {
			return true
		}
	}
	return false
}

func checkReason(reason, verb string) error {
	if strings.TrimSpace(reason) == "" {
		return Errorf(CodeBadRequest, "say why you %s with --reason", verb)
	}
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) {
		return Errorf(CodeBadRequest, "the reason is too long: at most %d characters", maxReasonLen)
	}
	return nil
}

func end(a *Amendment, to State, now time.Time, by, reason string) {
	a.State = to
	a.EndedAt = now
	a.EndedBy = by
	a.EndReason = reason
}

// approverRule authorizes who to approve or deny a: a member of the rule's
// approver groups who is not the requester.
func (s *Service) approverRule(who Identity, a *Amendment, verb string) (*Rule, error) {
	rule, ok := s.contract.Rule(a.Rule)
	if !ok {
		return nil, Errorf(CodePolicyViolation, "rule %q no longer exists in the contract, so amendment %s cannot be decided; request again", a.Rule, a.ShortID())
	}
	if who.Key() == a.Requester {
		return nil, Errorf(CodeForbidden, "you cannot %s your own amendment %s: ask someone in %s", verb, a.ShortID(), listOrNone(rule.ApproverGroups))
	}
	if !s.contract.canApprove(who, rule) {
		return nil, Errorf(CodeForbidden, "you may not %s amendment %s: rule %q needs an approver from %s", verb, a.ShortID(), rule.Name, listOrNone(rule.ApproverGroups))
	}
	return rule, nil
}

func (s *Service) canRevoke(who Identity, a *Amendment) bool {
	if who.Key() == a.Requester || who.InAny(s.contract.AdminGroups) {
		return true
	}
	rule, ok := s.contract.Rule(a.Rule)
	return ok && s.contract.canApprove(who, rule)
}

// minPrefix is the shortest ID prefix that Get and the actions accept.
const minPrefix = 4

// resolve finds the amendment an ID or a unique ID prefix (as short IDs are
// shown: the first eight characters) names.
func (s *Service) resolve(ctx context.Context, id string) (*Amendment, error) {
	a, err := s.store.Get(ctx, id)
	if err == nil || !errors.Is(err, ErrNotFound) || len(id) < minPrefix {
		return a, err
	}
	found, err := s.store.List(ctx, Filter{IDPrefix: id, Limit: 2})
	switch {
	case err != nil:
		return nil, err
	case len(found) == 0:
		return nil, Errorf(CodeNotFound, "no amendment %s: check the id with jitproxy amendments --all", id)
	case len(found) > 1:
		return nil, Errorf(CodeBadRequest, "%s names more than one amendment: give more of its id", id)
	}
	return found[0], nil
}

// Get returns amendment id (or unique id prefix) if who may see it.
func (s *Service) Get(ctx context.Context, who Identity, id string) (*Amendment, error) {
	a, err := s.resolve(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.contract.CanRead(who, a) {
		// Same answer as a missing one: do not confirm what exists.
		return nil, Errorf(CodeNotFound, "no amendment %s that you may see", id)
	}
	// Show what is true now, not what was last written: settle what time
	// has made due (the scheduler would, a moment later).
	return s.settle(ctx, a)
}

// List returns the amendments that pass f and that who may see.
func (s *Service) List(ctx context.Context, who Identity, f Filter) ([]*Amendment, error) {
	limit := f.Limit
	if !s.contract.CanReadAll(who) {
		f.Limit = 0 // filter by visibility first, then cut
	}
	all, err := s.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	readAll := s.contract.CanReadAll(who)
	out := all[:0]
	for _, a := range all {
		if _, _, ok := due(a, s.clock()); ok {
			if a, err = s.settle(ctx, a); err != nil {
				return nil, err
			}
			if !f.Match(a) {
				continue
			}
		}
		if readAll || s.contract.CanRead(who, a) {
			out = append(out, a)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// ActiveFor returns the person's amendment that grants access right now to
// a resource for which match is true: of several, the one that lasts
// longest. The proxies call it on every new connection and channel, so a
// revocation never waits for a certificate or token to expire. With none, the
// error is a not_found *Error whose message tells the person what to run.
func (s *Service) ActiveFor(ctx context.Context, person, target string, match func(Resource) bool, hint string) (*Amendment, error) {
	list, err := s.store.List(ctx, Filter{States: []State{Active}, Requester: person, Target: target})
	if err != nil {
		return nil, err
	}
	now := s.clock()
	var best *Amendment
	for _, a := range list {
		if a.ActiveAt(now) && match(a.Resource) && (best == nil || a.ExpiresAt.After(best.ExpiresAt)) {
			best = a
		}
	}
	if best == nil {
		return nil, &Error{Code: CodeNotFound, Message: hint}
	}
	return best, nil
}

// LatestExpiry returns when the last of the person's active amendments of
// kind ends (zero if none): user certificates never outlive it.
func (s *Service) LatestExpiry(ctx context.Context, person string, kind TargetKind) (time.Time, error) {
	list, err := s.store.List(ctx, Filter{States: []State{Active}, Requester: person})
	if err != nil {
		return time.Time{}, err
	}
	now := s.clock()
	var latest time.Time
	for _, a := range list {
		if a.Resource.Kind == kind && a.ActiveAt(now) && a.ExpiresAt.After(latest) {
			latest = a.ExpiresAt
		}
	}
	return latest, nil
}

// CanReadAudit reports whether who may read the whole audit trail: the
// contract's admin and auditor groups.
func (s *Service) CanReadAudit(who Identity) bool { return s.contract.CanReadAll(who) }

// Subscribe returns committed amendment changes; see Store.Subscribe.
func (s *Service) Subscribe(ctx context.Context) <-chan Change { return s.store.Subscribe(ctx) }

// update runs one action as a compare-and-set: read, settle what time has
// made due, apply fn to a copy, write; on a lost race, again from the read.
// After the action, due time transitions (activation of a just-approved
// amendment) are applied too.
func (s *Service) update(ctx context.Context, id string, fn func(a *Amendment, now time.Time) (Change, error)) (*Amendment, error) {
	a, err := s.resolve(ctx, id)
	if err != nil {
		return nil, err
	}
	id = a.ID
	for range maxRetries {
		if a, err = s.settle(ctx, a); err != nil {
			return nil, err
		}
		now := s.clock()
		next := a.Clone()
		c, err := fn(next, now)
		if err != nil {
			return nil, err
		}
		next.Version = a.Version + 1
		next.UpdatedAt = now
		c.Before, c.After, c.At = a, next, now
		err = s.store.Update(ctx, c)
		if errors.Is(err, ErrConflict) {
			if a, err = s.store.Get(ctx, id); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("amendment: update %s: %w", id, err)
		}
		s.logChange(c)
		return s.settle(ctx, next)
	}
	return nil, Errorf(CodeConflict, "amendment %s kept changing while you acted on it; try again", id)
}

// settle writes the transitions that time has made due for a (request TTL,
// activation, expiry), each as its own compare-and-set, and returns the
// settled amendment. A lost race re-reads and settles what is there.
func (s *Service) settle(ctx context.Context, a *Amendment) (*Amendment, error) {
	for range maxRetries {
		now := s.clock()
		next, c, ok := due(a, now)
		if !ok {
			return a, nil
		}
		err := s.store.Update(ctx, c)
		if errors.Is(err, ErrConflict) {
			if a, err = s.store.Get(ctx, a.ID); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("amendment: %s %s: %w", c.Event, a.ID, err)
		}
		s.logChange(c)
		a = next
	}
	return nil, Errorf(CodeConflict, "amendment %s kept changing; try again", a.ID)
}

// due returns the next transition that time makes due for a at now.
func due(a *Amendment, now time.Time) (*Amendment, Change, bool) {
	next := a.Clone()
	next.Version = a.Version + 1
	next.UpdatedAt = now
	c := Change{Actor: SystemActor, At: now, Before: a, After: next}
	switch {
	case a.State == Requested && !now.Before(a.RequestExpiresAt):
		end(next, Withdrawn, now, SystemActor, "no decision before the request expired")
		c.Event, c.Reason = EventWithdrawn, next.EndReason
	case a.State == Approved && (a.StartAt.IsZero() || !now.Before(a.StartAt)):
		next.State = Active
		next.ActivatedAt = now
		if !a.StartAt.IsZero() {
			// A scheduled window does not slide if we activate late.
			next.ActivatedAt = a.StartAt
		}
		next.ExpiresAt = next.ActivatedAt.Add(a.Duration)
		c.Event = EventActivated
	case a.State == Active && !now.Before(a.ExpiresAt):
		end(next, Expired, a.ExpiresAt, SystemActor, "expired")
		c.Event, c.Reason = EventExpired, "expired"
	default:
		return nil, Change{}, false
	}
	return next, c, true
}

// Deadline is when time next changes a's state; zero if never.
func (a *Amendment) Deadline() time.Time {
	switch a.State {
	case Requested:
		return a.RequestExpiresAt
	case Approved:
		return a.StartAt // zero start: due now, settled by the next Tick
	case Active:
		return a.ExpiresAt
	}
	return time.Time{}
}

// Tick settles every amendment whose time has come and returns the next
// deadline among those still open (zero if none). The server calls it once
// before any listener opens, so access that expired while it was down is
// expired first.
func (s *Service) Tick(ctx context.Context) (time.Time, error) {
	open, err := s.store.List(ctx, Filter{States: []State{Requested, Approved, Active}})
	if err != nil {
		return time.Time{}, fmt.Errorf("amendment: tick: %w", err)
	}
	var next time.Time
	var errs []error
	for _, a := range open {
		a, err := s.settle(ctx, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if d := a.Deadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next, errors.Join(errs...)
}

// Run settles deadlines as they come until ctx ends: it sleeps until the
// next deadline, or until a change arrives that may have moved one.
func (s *Service) Run(ctx context.Context) error {
	events := s.store.Subscribe(ctx)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = s.store.Subscribe(ctx)
			}
		case <-timer.C:
		}
		next, err := s.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Msg("settling amendment deadlines")
		}
		wait := s.maxSleep
		if !next.IsZero() {
			wait = min(max(next.Sub(s.now()), 0), s.maxSleep)
		}
		timer.Reset(wait)
	}
}

func (s *Service) logChange(c Change) {
	a := c.After
	ev := s.log.Info().
		Str("event", c.Event).
		Str("amendment", a.ID).
		Str("actor", c.Actor).
		Str("requester", a.Requester).
		Str("resource", a.Resource.String()).
		Str("state", string(a.State)).
		Int64("version", a.Version)
	if !a.ExpiresAt.IsZero() {
		ev = ev.Time("expires_at", a.ExpiresAt)
	}
	ev.Msg("amendment " + strings.TrimPrefix(c.Event, "amendment."))
}
