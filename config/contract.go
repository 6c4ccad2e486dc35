package config

import (
	"errors"
	"path"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/jitproxy/jitproxy/amendment"
)

func (c *Config) checkPolicy(ck *checker) {
	checkNames(ck, "contract.admin_groups", c.Policy.AdminGroups)
	checkNames(ck, "contract.auditor_groups", c.Policy.AuditorGroups)
	seen := make(map[string]string) // rule name → path of its first name
	for i := range c.Policy.Rules {
		r := &c.Policy.Rules[i]
		p := index("contract.rules", i)
		switch first, dup := seen[r.Name]; {
		case r.Name == "":
			ck.errorf(p+".name", "required (names the rule in requests and the audit trail)")
		case dup:
			ck.errorf(p+".name", "duplicate rule name %q (first at %s, line %d)", r.Name, first, ck.line(first))
		default:
			seen[r.Name] = p + ".name"
		}
		if len(r.Who.Groups) == 0 && len(r.Who.Emails) == 0 && !ck.reported(p+".who.groups", p+".who.emails") {
			ck.errorf(p+".who", "required: list groups or emails; as written the rule matches nobody")
		}
		checkNames(ck, p+".who.groups", r.Who.Groups)
		for j, e := range r.Who.Emails {
			checkEmail(ck, index(p+".who.emails", j), e, true)
		}
		c.checkCoverage(ck, r, p)
		if r.MaxDuration <= 0 {
			ck.errorf(p+".max_duration", "required (the longest an amendment under this rule may last, e.g. 4h)")
		}
		checkPositive(ck, p+".pending_ttl", r.PendingTTL)
		_, countGiven := ck.lines[p+".approvals.count"]
		checkApprovals(ck, r.Approvals, p+".approvals", countGiven)
		if r.TicketPattern != "" {
			re, err := regexp.Compile(r.TicketPattern)
			var se *syntax.Error
			switch {
			case errors.As(err, &se):
				ck.errorf(p+".ticket_pattern", "bad regexp: %s: `%s`", se.Code, se.Expr)
			case err != nil:
				ck.errorf(p+".ticket_pattern", "bad regexp: %v", err)
			default:
				r.ticket = re
			}
		}
	}
}

func checkApprovals(ck *checker, a Approvals, p string, countGiven bool) {
	if a.Count < 0 {
		ck.errorf(p+".count", "must be 0 (the policy approves by itself) or more, not %d", a.Count)
	}
	if a.ExtensionCount != nil && *a.ExtensionCount < 0 {
		ck.errorf(p+".extension_count", "must be 0 (extensions are approved by policy) or more, not %d", *a.ExtensionCount)
	}
	if len(a.Groups) == 0 {
		switch {
		case a.Count > 0 && !countGiven:
			ck.errorf(p+".groups", "required: count defaults to %d, so list the groups whose members may approve, or set count: 0 for approval by policy", a.Count)
		case a.Count > 0:
			ck.errorf(p+".groups", "required when count is %d: list the groups whose members may approve", a.Count)
		case a.ExtensionCount != nil && *a.ExtensionCount > 0:
			ck.errorf(p+".groups", "required when extension_count is %d: list the groups whose members may approve", *a.ExtensionCount)
		}
	}
	checkNames(ck, p+".groups", a.Groups)
}

// checkCoverage checks a rule's targets name or match configured targets,
// and that what the rule lets people request is offered by them.
func (c *Config) checkCoverage(ck *checker, r *Rule, p string) {
	if len(r.Targets) == 0 {
		ck.errorf(p+".targets", "required: list target names or globs such as web-*")
		return
	}
	var names []string
	for _, t := range c.Targets.SSH {
		names = append(names, t.Name)
	}
	for _, t := range c.Targets.Postgres {
		names = append(names, t.Name)
	}
	var ssh []SSHTarget
	var pg []PostgresTarget
	covered := make(map[string]bool)
	for j, pat := range r.Targets {
		tp := index(p+".targets", j)
		if pat == "" {
			ck.errorf(tp, "empty target name")
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			ck.errorf(tp, "bad pattern %q: %v", pat, err)
			continue
		}
		matched := false
		for _, t := range c.Targets.SSH {
			if ok, _ := path.Match(pat, t.Name); ok {
				matched = true
				if !covered[t.Name] {
					covered[t.Name] = true
					ssh = append(ssh, t)
				}
			}
		}
		for _, t := range c.Targets.Postgres {
			if ok, _ := path.Match(pat, t.Name); ok {
				matched = true
				if !covered[t.Name] {
					covered[t.Name] = true
					pg = append(pg, t)
				}
			}
		}
		switch {
		case matched:
		case strings.ContainsAny(pat, `*?[\`):
			ck.errorf(tp, "%q matches no target", pat)
		default:
			if guess := closest(pat, names); guess != "" {
				ck.errorf(tp, "unknown target %q (did you mean %s?)", pat, guess)
			} else {
				ck.errorf(tp, "unknown target %q", pat)
			}
		}
	}
	if len(ssh) == 0 && len(pg) == 0 {
		return
	}
	if len(r.Logins) == 0 && len(r.Roles) == 0 && !ck.reported(p+".logins", p+".roles") {
		ck.errorf(p, "grants nothing: list logins for its SSH targets or roles for its PostgreSQL targets")
	}

	var logins, roles, databases [][]string // what each covered target offers; empty means any
	for _, t := range ssh {
		logins = append(logins, t.Logins)
	}
	for _, t := range pg {
		names := make([]string, len(t.Roles))
		for i, r := range t.Roles {
			names[i] = r.Name
		}
		roles = append(roles, names)
		databases = append(databases, t.Databases)
	}
	checkOffered(ck, p+".logins", "SSH", "login", r.Logins, logins)
	checkOffered(ck, p+".roles", "PostgreSQL", "role", r.Roles, roles)
	checkOffered(ck, p+".databases", "PostgreSQL", "database", r.Databases, databases)
	if len(pg) > 0 && len(r.Roles) > 0 && len(r.Databases) == 0 {
		ck.errorf(p+".databases", `required with roles: list the databases that may be requested, or "*" for any the target offers`)
	}
}

// checkOffered checks that each item a rule lists (a login, role or
// database) is offered by at least one of the targets the rule covers of
// that kind; offers holds one list per target, empty meaning anything.
func checkOffered(ck *checker, path, kind, what string, items []string, offers [][]string) {
	if len(items) == 0 {
		return
	}
	if len(offers) == 0 {
		ck.errorf(path, "the rule covers no %s target", kind)
		return
	}
	checkNames(ck, path, items)
	var all []string
	for _, o := range offers {
		if len(o) == 0 {
			return // a target offers any
		}
		for _, v := range o {
			if !slices.Contains(all, v) {
				all = append(all, v)
			}
		}
	}
	for i, v := range items {
		if v != "*" && v != "" && !slices.Contains(all, v) {
			ck.errorf(index(path, i), "no %s target this rule covers offers %s %q (they offer %s)", kind, what, v, strings.Join(all, ", "))
		}
	}
}

// Contract returns the contract the configuration describes, for the
// amendment service. It is built anew on each call from the current fields,
// so a caller may adjust targets first (jitproxy dev fills in its demo
// targets). Ticket patterns were compiled by validation; one that no longer
// compiles matches no ticket, so its rule refuses every request.
func (c *Config) Contract() *amendment.Contract {
	ct := &amendment.Contract{
		Targets:       make(map[string]amendment.Target, len(c.Targets.SSH)+len(c.Targets.Postgres)),
		AdminGroups:   slices.Clone(c.Policy.AdminGroups),
		AuditorGroups: slices.Clone(c.Policy.AuditorGroups),
	}
	for _, t := range c.Targets.SSH {
		ct.Targets[t.Name] = amendment.Target{Name: t.Name, Kind: amendment.KindSSH, Logins: slices.Clone(t.Logins)}
	}
	for _, t := range c.Targets.Postgres {
		roles := make([]string, len(t.Roles))
		for i, r := range t.Roles {
			roles[i] = r.Name
		}
		ct.Targets[t.Name] = amendment.Target{Name: t.Name, Kind: amendment.KindPostgres, Roles: roles, Databases: slices.Clone(t.Databases)}
	}
	for i := range c.Policy.Rules {
		r := &c.Policy.Rules[i]
		ext := r.Approvals.Count
		if r.Approvals.ExtensionCount != nil {
			ext = *r.Approvals.ExtensionCount
		}
		ct.Rules = append(ct.Rules, amendment.Rule{
			Name:               r.Name,
			Groups:             slices.Clone(r.Who.Groups),
			Emails:             slices.Clone(r.Who.Emails),
			Targets:            slices.Clone(r.Targets),
			Logins:             slices.Clone(r.Logins),
			Roles:              slices.Clone(r.Roles),
			Databases:          slices.Clone(r.Databases),
			PortForwarding:     r.PortForwarding,
			ReadOnly:           r.ReadOnly,
			MaxDuration:        r.MaxDuration.Std(),
			Approvals:          r.Approvals.Count,
			ApproverGroups:     slices.Clone(r.Approvals.Groups),
			ExtensionApprovals: ext,
			RequireReason:      r.RequireReason,
			TicketPattern:      r.ticketRegexp(),
			PendingTTL:         r.PendingTTL.Std(),
			MaxScheduleAhead:   r.MaxScheduleAhead.Std(),
		})
	}
	return ct
}

// ticketRegexp returns the compiled TicketPattern, nil if there is none.
func (r *Rule) ticketRegexp() *regexp.Regexp {
	if r.TicketPattern == "" {
		return nil
	}
	if r.ticket != nil && r.ticket.String() == r.TicketPattern {
		return r.ticket
	}
	re, err := regexp.Compile(r.TicketPattern)
	if err != nil {
		return regexp.MustCompile(`[^\s\S]`) // fail closed: matches nothing
	}
	return re
}
