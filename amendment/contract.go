package amendment

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Identity is a person as the identity provider vouches for them.
type Identity struct {
	Subject string   `json:"subject,omitempty"`
	Issuer  string   `json:"issuer,omitempty"`
	Email   string   `json:"email"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// Key is the identity's stable key in amendments and the audit trail: the
// lower-cased email.
func (id Identity) Key() string { return strings.ToLower(strings.TrimSpace(id.Email)) }

// InAny reports whether the identity belongs to any of groups.
func (id Identity) InAny(groups []string) bool {
	for _, g := range id.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// Target is what the contract needs to know of an upstream: its name, kind
// and what it offers. Addresses and credentials belong to the proxies.
type Target struct {
	Name string
	Kind TargetKind
	// Logins are the SSH logins the target accepts; empty means any.
	Logins []string
	// Roles and Databases are the PostgreSQL roles and databases the target
	// offers; empty means any.
	Roles     []string
	Databases []string
}

// Rule is one clause of the contract: who may request what, for how long,
// with which approvals.
type Rule struct {
	Name string
	// Groups and Emails say who may request under this rule: a person
	// matches if they are in any group or have any email listed.
	Groups []string
	Emails []string
	// Targets are target names or globs (path.Match syntax: "web-*").
	Targets []string
	// Logins, Roles and Databases are what may be requested on those
	// targets; "*" means anything the target offers. An empty list allows
	// nothing of that kind.
	Logins    []string
	Roles     []string
	Databases []string
	// PortForwarding lets requests under this rule ask for SSH port
	// forwarding.
	PortForwarding bool
	// ReadOnly forces PostgreSQL amendments under this rule to read-only.
	ReadOnly bool
	// MaxDuration bounds an amendment's whole active window, extensions
	// included.
	MaxDuration time.Duration
	// Approvals is how many distinct approvers must say yes; 0 means the
	// policy approves by itself.
	Approvals int
	// ApproverGroups are the groups whose members may approve or deny.
	ApproverGroups []string
	// ExtensionApprovals is how many approvals an extension needs; 0 means
	// extensions are approved by policy.
	ExtensionApprovals int
	// RequireReason refuses requests with no reason.
	RequireReason bool
	// TicketPattern, if set, must match the ticket; a request with no
	// ticket is then refused.
	TicketPattern *regexp.Regexp
	// PendingTTL is how long a request waits for approval before it is
	// withdrawn.
	PendingTTL time.Duration
	// MaxScheduleAhead bounds how far in the future a scheduled start may
	// be; 0 means PendingTTL.
	MaxScheduleAhead time.Duration
}

// Contract is the standing policy: targets and rules, plus the groups with
// powers over every amendment.
type Contract struct {
	Targets map[string]Target
	Rules   []Rule
	// AdminGroups may revoke any amendment.
	AdminGroups []string
	// AuditorGroups may read every amendment and the audit trail, and change
	// nothing.
	AuditorGroups []string
}

// Rule returns the rule with that name.
func (c *Contract) Rule(name string) (*Rule, bool) {
	for i := range c.Rules {
		if c.Rules[i].Name == name {
			return &c.Rules[i], true
		}
	}
	return nil, false
}

// Request is what a person asks for.
type Request struct {
	Target   string
	Login    string
	Role     string
	Database string
	// PortForwarding and ReadOnly ask for those permissions.
	PortForwarding bool
	ReadOnly       bool
	Duration       time.Duration
	Reason         string
	Ticket         string
	// StartAt schedules the start; zero means as soon as approved.
	StartAt time.Time
}

// Matches reports whether the rule lets who request on target at all.
func (r *Rule) Matches(who Identity, target string) bool {
	return r.covers(who) && r.coversTarget(target)
}

func (r *Rule) covers(who Identity) bool {
	if who.InAny(r.Groups) {
		return true
	}
	key := who.Key()
	for _, e := range r.Emails {
		if strings.EqualFold(e, key) {
			return true
		}
	}
	return false
}

func (r *Rule) coversTarget(target string) bool {
	for _, pat := range r.Targets {
		if ok, _ := path.Match(pat, target); ok {
			return true
		}
	}
	return false
}

func allows(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// Evaluate decides a request: it returns the rule that grants it and the
// resource it describes, or a policy_violation *Error that names the rule
// and what was wrong. Rules are tried in order; the first that allows the
// whole request wins. now is used for scheduled starts.
func (c *Contract) Evaluate(who Identity, req Request, now time.Time) (*Rule, Resource, error) {
	t, ok := c.Targets[req.Target]
	if !ok {
		return nil, Resource{}, Errorf(CodePolicyViolation, "unknown target %q: run jitproxy targets to see what you may request", req.Target)
	}
	if who.Key() == "" {
		return nil, Resource{}, Errorf(CodeForbidden, "your identity has no email; ask your identity provider admin to release the email claim")
	}
	// Of the rules that refuse, report the one that came closest: a rule
	// that allows the login or role but wants a ticket says more than one
	// that does not allow the role at all.
	var best error
	bestStage := -1
	for i := range c.Rules {
		r := &c.Rules[i]
		if !r.Matches(who, req.Target) {
			continue
		}
		res, stage, err := r.check(t, req, now)
		if err == nil {
			return r, res, nil
		}
		if stage > bestStage {
			best, bestStage = err, stage
		}
	}
	if best != nil {
		return nil, Resource{}, best
	}
	return nil, Resource{}, Errorf(CodePolicyViolation, "no rule of the contract lets %s request access to %s; ask your jitproxy admin to add one", who.Key(), req.Target)
}

func (r *Rule) violation(format string, args ...any) *Error {
	return &Error{Code: CodePolicyViolation, Rule: r.Name, Message: fmt.Sprintf("rule %q: ", r.Name) + fmt.Sprintf(format, args...)}
}

// Stages of check, in order: how far a request got before a rule refused it.
const (
	stageResource = iota // what is asked for (login, role, database)
	stageLimits          // duration, reason, ticket, start
)

// check tests a request against one rule that matches its requester and
// target, and says at which stage it refused.
func (r *Rule) check(t Target, req Request, now time.Time) (Resource, int, error) {
	res, err := r.checkResource(t, req)
	if err != nil {
		return res, stageResource, err
	}
	return res, stageLimits, r.checkLimits(req, now)
}

func (r *Rule) checkResource(t Target, req Request) (Resource, error) {
	res := Resource{Target: t.Name, Kind: t.Kind}
	switch t.Kind {
	case KindSSH:
		if req.Role != "" || req.Database != "" {
			return res, r.violation("%s is an SSH target: ask for --login, not a database role", t.Name)
		}
		if req.ReadOnly {
			return res, r.violation("read-only applies to PostgreSQL targets, and %s is an SSH target", t.Name)
		}
		if req.Login == "" {
			return res, r.violation("%s is an SSH target: say which login with --login", t.Name)
		}
		if len(t.Logins) > 0 && !slices.Contains(t.Logins, req.Login) {
			return res, r.violation("target %s has no login %q (it offers %s)", t.Name, req.Login, strings.Join(t.Logins, ", "))
		}
		if !allows(r.Logins, req.Login) {
			return res, r.violation("login %q may not be requested (allowed: %s)", req.Login, listOrNone(r.Logins))
		}
		if req.PortForwarding && !r.PortForwarding {
			return res, r.violation("port forwarding may not be requested on %s", t.Name)
		}
		res.Login = req.Login
		res.PortForwarding = req.PortForwarding
	case KindPostgres:
		if req.Login != "" || req.PortForwarding {
			return res, r.violation("%s is a PostgreSQL target: ask for --role, not an SSH login", t.Name)
		}
		if req.Role == "" {
			return res, r.violation("%s is a PostgreSQL target: say which role with --role", t.Name)
		}
		if len(t.Roles) > 0 && !slices.Contains(t.Roles, req.Role) {
			return res, r.violation("target %s has no role %q (it offers %s)", t.Name, req.Role, strings.Join(t.Roles, ", "))
		}
		if !allows(r.Roles, req.Role) {
			return res, r.violation("role %q may not be requested (allowed: %s)", req.Role, listOrNone(r.Roles))
		}
		switch {
		case req.Database != "":
			if len(t.Databases) > 0 && !slices.Contains(t.Databases, req.Database) {
				return res, r.violation("target %s has no database %q (it offers %s)", t.Name, req.Database, strings.Join(t.Databases, ", "))
			}
			if !allows(r.Databases, req.Database) {
				return res, r.violation("database %q may not be requested (allowed: %s)", req.Database, listOrNone(r.Databases))
			}
		case len(r.Databases) == 1 && r.Databases[0] != "*":
			req.Database = r.Databases[0] // the only one allowed
		case !slices.Contains(r.Databases, "*"):
			return res, r.violation("say which database with --database (allowed: %s)", listOrNone(r.Databases))
		}
		res.Role = req.Role
		res.Database = req.Database
		res.ReadOnly = req.ReadOnly || r.ReadOnly
	default:
		return res, r.violation("target %s has unknown kind %q", t.Name, t.Kind)
	}
	return res, nil
}

func (r *Rule) checkLimits(req Request, now time.Time) error {
	if req.Duration <= 0 {
		return r.violation("say for how long with --for (at most %s)", FormatDuration(r.MaxDuration))
	}
	if req.Duration > r.MaxDuration {
		return r.violation("duration %s exceeds the maximum %s", FormatDuration(req.Duration), FormatDuration(r.MaxDuration))
	}
	if r.RequireReason && strings.TrimSpace(req.Reason) == "" {
		return r.violation("a reason is required: say why with --reason")
	}
	if r.TicketPattern != nil {
		if req.Ticket == "" {
			return r.violation("a ticket is required (matching %s): add --ticket", r.TicketPattern)
		}
		if !r.TicketPattern.MatchString(req.Ticket) {
			return r.violation("ticket %q does not match %s", req.Ticket, r.TicketPattern)
		}
	}
	if !req.StartAt.IsZero() {
		ahead := r.MaxScheduleAhead
		if ahead == 0 {
			ahead = r.PendingTTL
		}
		if req.StartAt.Before(now.Add(-time.Minute)) {
			return r.violation("start time %s is in the past", req.StartAt.UTC().Format(time.RFC3339))
		}
		if req.StartAt.After(now.Add(ahead)) {
			return r.violation("start time %s is more than %s ahead", req.StartAt.UTC().Format(time.RFC3339), FormatDuration(ahead))
		}
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// canApprove reports whether who may approve or deny under r.
func (c *Contract) canApprove(who Identity, r *Rule) bool {
	return who.InAny(r.ApproverGroups)
}

// CanRead reports whether who may see a: their own, ones they may approve,
// or all of them for admins and auditors.
func (c *Contract) CanRead(who Identity, a *Amendment) bool {
	if a.Requester == who.Key() || who.InAny(c.AdminGroups) || who.InAny(c.AuditorGroups) {
		return true
	}
	if r, ok := c.Rule(a.Rule); ok && c.canApprove(who, r) {
		return true
	}
	return false
}

// CanReadAll reports whether who sees every amendment (admins, auditors).
func (c *Contract) CanReadAll(who Identity) bool {
	return who.InAny(c.AdminGroups) || who.InAny(c.AuditorGroups)
}
