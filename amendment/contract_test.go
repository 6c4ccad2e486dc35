package amendment

import (
	"regexp"
	"testing"
	"time"
)

func testContract() *Contract {
	return &Contract{
		Targets: map[string]Target{
			"web-1":  {Name: "web-1", Kind: KindSSH, Logins: []string{"ubuntu", "deploy"}},
			"web-2":  {Name: "web-2", Kind: KindSSH},
			"app-db": {Name: "app-db", Kind: KindPostgres, Roles: []string{"app_ro", "app_rw"}, Databases: []string{"app", "reports"}},
			"one-db": {Name: "one-db", Kind: KindPostgres},
		},
		Rules: []Rule{
			{
				Name: "eng-web", Groups: []string{"eng"}, Targets: []string{"web-*"}, Logins: []string{"ubuntu"},
				MaxDuration: 4 * time.Hour, Approvals: 1, ApproverGroups: []string{"sre-leads"}, ExtensionApprovals: 1,
				RequireReason: true, TicketPattern: regexp.MustCompile(`^OPS-[0-9]+$`), PendingTTL: 24 * time.Hour,
			},
			{
				Name: "eng-db-ro", Groups: []string{"eng"}, Targets: []string{"app-db"}, Roles: []string{"app_ro"}, Databases: []string{"*"},
				ReadOnly: true, MaxDuration: 8 * time.Hour, PendingTTL: time.Hour,
			},
			{
				Name: "eng-db-rw", Groups: []string{"eng"}, Targets: []string{"app-db"}, Roles: []string{"app_rw"}, Databases: []string{"*"},
				MaxDuration: time.Hour, TicketPattern: regexp.MustCompile(`^OPS-[0-9]+$`), PendingTTL: time.Hour,
			},
			{
				Name: "one-db", Emails: []string{"Dana@Example.com"}, Targets: []string{"one-db"}, Roles: []string{"*"}, Databases: []string{"main"},
				MaxDuration: time.Hour, PendingTTL: time.Hour,
			},
		},
		AdminGroups:   []string{"admins"},
		AuditorGroups: []string{"security"},
	}
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	alice := Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	dana := Identity{Email: "dana@example.com"}
	ok := Request{Target: "web-1", Login: "ubuntu", Duration: time.Hour, Reason: "deploy", Ticket: "OPS-7"}
	tests := []struct {
		name     string
		who      Identity
		req      func(r Request) Request
		wantRule string
		wantRes  Resource
		wantErr  string
	}{
		{name: "granted", who: alice, req: func(r Request) Request { return r }, wantRule: "eng-web", wantRes: Resource{Target: "web-1", Kind: KindSSH, Login: "ubuntu"}},
		{name: "glob target", who: alice, req: func(r Request) Request { r.Target = "web-2"; return r }, wantRule: "eng-web", wantRes: Resource{Target: "web-2", Kind: KindSSH, Login: "ubuntu"}},
		{name: "unknown target", who: alice, req: func(r Request) Request { r.Target = "mail-1"; return r }, wantErr: `unknown target "mail-1": run jitproxy targets to see what you may request`},
		{name: "nobody's rule", who: Identity{Email: "eve@example.com", Groups: []string{"sales"}}, req: func(r Request) Request { return r }, wantErr: "no rule of the contract lets eve@example.com request access to web-1; ask your jitproxy admin to add one"},
		{name: "no email", who: Identity{Subject: "x", Groups: []string{"eng"}}, req: func(r Request) Request { return r }, wantErr: "your identity has no email; ask your identity provider admin to release the email claim"},
		{name: "too long", who: alice, req: func(r Request) Request { r.Duration = 5 * time.Hour; return r }, wantErr: `rule "eng-web": duration 5h exceeds the maximum 4h`},
		{name: "no duration", who: alice, req: func(r Request) Request { r.Duration = 0; return r }, wantErr: `rule "eng-web": say for how long with --for (at most 4h)`},
		{name: "no reason", who: alice, req: func(r Request) Request { r.Reason = "  "; return r }, wantErr: `rule "eng-web": a reason is required: say why with --reason`},
		{name: "no ticket", who: alice, req: func(r Request) Request { r.Ticket = ""; return r }, wantErr: `rule "eng-web": a ticket is required (matching ^OPS-[0-9]+$): add --ticket`},
		{name: "bad ticket", who: alice, req: func(r Request) Request { r.Ticket = "JIRA-1"; return r }, wantErr: `rule "eng-web": ticket "JIRA-1" does not match ^OPS-[0-9]+$`},
		{name: "login not offered", who: alice, req: func(r Request) Request { r.Login = "root"; return r }, wantErr: `rule "eng-web": target web-1 has no login "root" (it offers ubuntu, deploy)`},
		{name: "login not allowed", who: alice, req: func(r Request) Request { r.Login = "deploy"; return r }, wantErr: `rule "eng-web": login "deploy" may not be requested (allowed: ubuntu)`},
		{name: "no login", who: alice, req: func(r Request) Request { r.Login = ""; return r }, wantErr: `rule "eng-web": web-1 is an SSH target: say which login with --login`},
		{name: "role on ssh", who: alice, req: func(r Request) Request { r.Role = "app_ro"; return r }, wantErr: `rule "eng-web": web-1 is an SSH target: ask for --login, not a database role`},
		{name: "port forwarding", who: alice, req: func(r Request) Request { r.PortForwarding = true; return r }, wantErr: `rule "eng-web": port forwarding may not be requested on web-1`},
		{name: "past start", who: alice, req: func(r Request) Request { r.StartAt = now.Add(-time.Hour); return r }, wantErr: `rule "eng-web": start time 2026-11-29T11:00:00Z is in the past`},
		{name: "far start", who: alice, req: func(r Request) Request { r.StartAt = now.Add(48 * time.Hour); return r }, wantErr: `rule "eng-web": start time 2026-12-01T12:00:00Z is more than 1d ahead`},
		{name: "db read-only forced", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Role: "app_ro", Database: "reports", Duration: time.Hour}
		}, wantRule: "eng-db-ro", wantRes: Resource{Target: "app-db", Kind: KindPostgres, Role: "app_ro", Database: "reports", ReadOnly: true}},
		{name: "db role not allowed", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Role: "app_rw", Database: "app", Duration: time.Hour}
		}, wantErr: `rule "eng-db-rw": a ticket is required (matching ^OPS-[0-9]+$): add --ticket`},
		{name: "db role no rule allows", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Role: "app_admin", Database: "app", Duration: time.Hour}
		}, wantErr: `rule "eng-db-ro": target app-db has no role "app_admin" (it offers app_ro, app_rw)`},
		{name: "db second rule grants", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Role: "app_rw", Database: "app", Duration: time.Hour, Ticket: "OPS-1"}
		}, wantRule: "eng-db-rw", wantRes: Resource{Target: "app-db", Kind: KindPostgres, Role: "app_rw", Database: "app"}},
		{name: "db unknown database", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Role: "app_ro", Database: "hr", Duration: time.Hour}
		}, wantErr: `rule "eng-db-ro": target app-db has no database "hr" (it offers app, reports)`},
		{name: "db login instead of role", who: alice, req: func(Request) Request {
			return Request{Target: "app-db", Login: "ubuntu", Duration: time.Hour}
		}, wantErr: `rule "eng-db-ro": app-db is a PostgreSQL target: ask for --role, not an SSH login`},
		{name: "email rule, case-insensitive, only database filled in", who: dana, req: func(Request) Request {
			return Request{Target: "one-db", Role: "anything", Duration: time.Hour}
		}, wantRule: "one-db", wantRes: Resource{Target: "one-db", Kind: KindPostgres, Role: "anything", Database: "main"}},
	}
	c := testContract()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, res, err := c.Evaluate(tt.who, tt.req(ok), now)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v; want %q", err, tt.wantErr)
				}
				if CodeOf(err) == "" {
					t.Errorf("error %v has no code; want a domain error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v; want none", err)
			}
			if rule.Name != tt.wantRule || res != tt.wantRes {
				t.Errorf("got rule %s resource %+v; want %s %+v", rule.Name, res, tt.wantRule, tt.wantRes)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"30m", 30 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"2d", 48 * time.Hour, ""},
		{" 4h ", 4 * time.Hour, ""},
		{"-5m", 0, `bad duration "-5m": it must be positive`},
		{"0s", 0, `bad duration "0s": it must be positive`},
		{"10y", 0, `bad duration "10y": write e.g. 30m, 2h or 1d`},
		{"abc", 0, `bad duration "abc": write e.g. 30m, 2h or 1d`},
		{"400d", 0, `bad duration "400d": the longest allowed is 366d`},
		{"99999999999999d", 0, `bad duration "99999999999999d": the longest allowed is 366d`},
		{"", 0, "empty duration: write e.g. 30m, 2h or 1d"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[time.Duration]string{
		2 * time.Hour: "2h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s", 72 * time.Hour: "3d", 0: "0s",
	} {
		if got := FormatDuration(in); got != want {
			t.Errorf("FormatDuration(%v): got %q; want %q", in, got, want)
		}
	}
}

func TestCanTransition(t *testing.T) {
	legal := map[[2]State]bool{
		{Requested, Requested}: true, {Requested, Approved}: true, {Requested, Denied}: true, {Requested, Withdrawn}: true,
		{Approved, Active}: true, {Approved, Revoked}: true,
		{Active, Active}: true, {Active, Expired}: true, {Active, Revoked}: true,
	}
	for _, from := range States {
		for _, to := range States {
			if got := CanTransition(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("CanTransition(%s, %s): got %v; want %v", from, to, got, !got)
			}
		}
	}
}
