package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/configs"
)

// minimal is the smallest valid file: an identity provider, one target,
// one rule.
const minimal = `
oidc:
  issuer: https://login.example.com
  client_id: jitproxy
targets:
  ssh:
    - name: web-1
      address: web-1.internal:22
      host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSIXul4B/6SM5IY9dK7dmB8+nkTF1DCzOLiM3pPNn4p"]
contract:
  rules:
    - name: web
      who: {groups: [eng]}
      targets: [web-1]
      logins: [ubuntu]
      max_duration: 4h
      approvals: {groups: [leads]}
`

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml), filepath.Join(t.TempDir(), "jitproxy.yaml"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestShippedConfigsLoad(t *testing.T) {
	tests := []struct {
		name string
		path string
		want string // Summary up to the data directory
	}{
		{name: "dev", path: "../configs/dev.yaml", want: "1 SSH target, 1 PostgreSQL target, 2 rules; storage sqlite at "},
		{name: "example", path: "../configs/jitproxy.example.yaml", want: "3 SSH targets, 1 PostgreSQL target, 4 rules; storage sqlite at /var/lib/jitproxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.path)
			if err != nil {
				t.Fatalf("Load(%s): %v", tt.path, err)
			}
			if got := c.Summary(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %v; want %v...", got, tt.want)
			}
		})
	}
}

// evaluate runs one request through a config's contract and returns the
// granting rule's name, or the refusal.
func evaluate(c *Config, who amendment.Identity, req amendment.Request) string {
	r, _, err := c.Contract().Evaluate(who, req, time.Now())
	if err != nil {
		return "refused: " + err.Error()
	}
	return r.Name
}

func TestDevConfig(t *testing.T) {
	c, err := Load("../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("../configs")
	fields := []struct {
		name string
		got  any
		want any
	}{
		{name: "api_listen", got: c.Server.APIListen, want: "127.0.0.1:8080"},
		{name: "ssh_listen", got: c.Server.SSHListen, want: "127.0.0.1:2222"},
		{name: "postgres_listen", got: c.Server.PostgresListen, want: "127.0.0.1:5433"},
		{name: "issuer", got: c.OIDC.Issuer, want: "http://127.0.0.1:8080/dev-idp"},
		{name: "client_id", got: c.OIDC.ClientID, want: "jitproxy-dev"},
		{name: "data dir", got: c.DataDir(), want: filepath.Join(dir, "jitproxy-data")},
		{name: "recordings", got: c.Recordings.Dir, want: filepath.Join(dir, "jitproxy-data", "recordings")},
		{name: "users", got: len(c.DevIdP.Users), want: 3},
		{name: "admins", got: fmt.Sprint(c.Contract().AdminGroups), want: "[sre-leads]"},
		{name: "auditors", got: fmt.Sprint(c.Contract().AuditorGroups), want: "[security]"},
		{name: "demo-ssh is dev", got: c.Targets.SSH[0].Name + fmt.Sprint(c.Targets.SSH[0].DevSSHD), want: "demo-sshtrue"},
		{name: "demo-db is dev", got: c.Targets.Postgres[0].Name + fmt.Sprint(c.Targets.Postgres[0].DevPostgres), want: "demo-dbtrue"},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s: got %v; want %v", f.name, f.got, f.want)
		}
	}
	users := []struct{ name, password, email, groups string }{
		{"alice", "alice", "alice@example.com", "[eng]"},
		{"bob", "bob", "bob@example.com", "[sre-leads]"},
		{"carol", "carol", "carol@example.com", "[security]"},
	}
	for i, want := range users {
		u := c.DevIdP.Users[i]
		pw, err := u.Password.Value()
		if err != nil {
			t.Fatal(err)
		}
		if got := []string{u.Username, pw, u.Email, fmt.Sprint(u.Groups)}; !slices.Equal(got, []string{want.name, want.password, want.email, want.groups}) {
			t.Errorf("user %d: got %v; want %v", i, got, want)
		}
	}

	alice := amendment.Identity{Email: "alice@example.com", Groups: []string{"eng"}}
	carol := amendment.Identity{Email: "carol@example.com", Groups: []string{"security"}}
	requests := []struct {
		name string
		who  amendment.Identity
		req  amendment.Request
		want string
	}{
		{name: "read-only role is auto-approved", who: alice, req: amendment.Request{Target: "demo-db", Role: "app_ro", Duration: time.Hour, Reason: "look"}, want: "eng-demo-db-read"},
		{name: "read-write role needs approval", who: alice, req: amendment.Request{Target: "demo-db", Role: "app_rw", Duration: 8 * time.Hour, Reason: "fix"}, want: "eng-demo"},
		{name: "ssh any login", who: alice, req: amendment.Request{Target: "demo-ssh", Login: "someone", Duration: 8 * time.Hour, Reason: "debug"}, want: "eng-demo"},
		{name: "ssh over 8h", who: alice, req: amendment.Request{Target: "demo-ssh", Login: "someone", Duration: 9 * time.Hour, Reason: "debug"}, want: `refused: rule "eng-demo": duration 9h exceeds the maximum 8h`},
		{name: "auditor may not request", who: carol, req: amendment.Request{Target: "demo-ssh", Login: "someone", Duration: time.Hour, Reason: "x"}, want: "refused: no rule of the contract lets carol@example.com request access to demo-ssh; ask your jitproxy admin to add one"},
	}
	for _, tt := range requests {
		t.Run(tt.name, func(t *testing.T) {
			if got := evaluate(c, tt.who, tt.req); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
	ct := c.Contract()
	auto, _ := ct.Rule("eng-demo-db-read")
	approved, _ := ct.Rule("eng-demo")
	rules := []struct {
		name string
		got  any
		want any
	}{
		{name: "auto approvals", got: auto.Approvals, want: 0},
		{name: "auto read-only", got: auto.ReadOnly, want: true},
		{name: "approvals", got: approved.Approvals, want: 1},
		{name: "approver groups", got: fmt.Sprint(approved.ApproverGroups), want: "[sre-leads]"},
		{name: "max duration", got: approved.MaxDuration, want: 8 * time.Hour},
		{name: "extension approvals", got: approved.ExtensionApprovals, want: 1},
	}
	for _, f := range rules {
		if f.got != f.want {
			t.Errorf("%s: got %v; want %v", f.name, f.got, f.want)
		}
	}
}

func TestExampleConfig(t *testing.T) {
	c, err := Load("../configs/jitproxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eng := amendment.Identity{Email: "dev@example.com", Groups: []string{"eng"}}
	oncall := amendment.Identity{Email: "sre@example.com", Groups: []string{"sre-oncall"}}
	contractor := amendment.Identity{Email: "Contractor.Jane@partner.example"}
	tests := []struct {
		name string
		who  amendment.Identity
		req  amendment.Request
		want string
	}{
		{name: "read-only database", who: eng, req: amendment.Request{Target: "app-db", Role: "app_ro", Database: "reporting", Duration: time.Hour, Reason: "report"}, want: "eng-app-db-read"},
		{name: "data fix with ticket", who: eng, req: amendment.Request{Target: "app-db", Role: "app_rw", Duration: time.Hour, Reason: "fix", Ticket: "OPS-42"}, want: "eng-app-db-write"},
		// Evaluate reports the first matching rule's objection.
		{name: "data fix without ticket", who: eng, req: amendment.Request{Target: "app-db", Role: "app_rw", Duration: time.Hour, Reason: "fix"}, want: `refused: rule "eng-app-db-write": a ticket is required (matching ^OPS-[0-9]+$): add --ticket`},
		{name: "deploy without ticket", who: eng, req: amendment.Request{Target: "web-1", Login: "deploy", Duration: time.Hour, Reason: "release"}, want: `refused: rule "eng-web-deploy": a ticket is required (matching ^(OPS|INC)-[0-9]+$): add --ticket`},
		{name: "deploy with a bad ticket", who: eng, req: amendment.Request{Target: "web-1", Login: "deploy", Duration: time.Hour, Reason: "release", Ticket: "JIRA-1"}, want: `refused: rule "eng-web-deploy": ticket "JIRA-1" does not match ^(OPS|INC)-[0-9]+$`},
		{name: "deploy by glob", who: eng, req: amendment.Request{Target: "web-2", Login: "deploy", Duration: time.Hour, Reason: "release", Ticket: "INC-7"}, want: "eng-web-deploy"},
		{name: "deploy by email", who: contractor, req: amendment.Request{Target: "build-1", Login: "ci", Duration: time.Hour, Reason: "release", Ticket: "OPS-1"}, want: "eng-web-deploy"},
		{name: "root for on-call", who: oncall, req: amendment.Request{Target: "web-1", Login: "root", Duration: time.Hour, Reason: "outage", Ticket: "INC-9"}, want: "sre-prod-root"},
		{name: "no root for eng", who: eng, req: amendment.Request{Target: "web-1", Login: "root", Duration: time.Hour, Reason: "x", Ticket: "INC-9"}, want: `refused: rule "eng-web-deploy": login "root" may not be requested (allowed: deploy, ci)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := evaluate(c, tt.who, tt.req); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
	root, _ := c.Contract().Rule("sre-prod-root")
	if root.Approvals != 2 || root.ExtensionApprovals != 2 {
		t.Errorf("sre-prod-root: got %v approvals, %v for extensions; want 2, 2", root.Approvals, root.ExtensionApprovals)
	}
	secrets := []struct {
		name string
		got  Secret
		want string
	}{
		{name: "client secret", got: c.OIDC.ClientSecret, want: "env JITPROXY_OIDC_CLIENT_SECRET"},
		{name: "app_ro", got: c.Targets.Postgres[0].Roles[0].Password, want: "env JITPROXY_APP_RO_PASSWORD"},
		{name: "app_rw", got: c.Targets.Postgres[0].Roles[1].Password, want: "file /etc/jitproxy/secrets/app_rw.password"},
		{name: "siem", got: c.Notifications.Webhooks[1].Secret, want: "env JITPROXY_SIEM_WEBHOOK_KEY"},
		{name: "slack", got: c.Notifications.Webhooks[0].Secret, want: "unset"},
	}
	for _, tt := range secrets {
		if got := tt.got.String(); got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestExampleDocumentsEveryField checks that every field name the decoder
// knows appears in the example file, so a new field cannot go undocumented.
func TestExampleDocumentsEveryField(t *testing.T) {
	data, err := os.ReadFile("../configs/jitproxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range fieldNames(Config{}) {
		if !strings.Contains(string(data), name) {
			t.Errorf("got no mention of %q in the example; want every field documented", name)
		}
	}
}

// fieldNames lists every name the decoder accepts anywhere under v's type.
func fieldNames(v any) []string {
	var names []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[Secret]() {
			return
		}
		known, ns := fields(t)
		names = append(names, ns...)
		for _, n := range ns {
			walk(t.Field(known[n].index).Type)
		}
	}
	walk(reflect.TypeOf(v))
	return names
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	r := c.Policy.Rules[0]
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "api_listen", got: c.Server.APIListen, want: "127.0.0.1:8080"},
		{name: "public_url", got: c.Server.PublicURL, want: "http://127.0.0.1:8080"},
		{name: "ssh_listen", got: c.Server.SSHListen, want: "127.0.0.1:2222"},
		{name: "postgres_listen", got: c.Server.PostgresListen, want: "127.0.0.1:5433"},
		{name: "shutdown_timeout", got: c.Server.ShutdownTimeout.Std(), want: 15 * time.Second},
		{name: "max_body_bytes", got: c.Server.MaxBodyBytes, want: int64(65536)},
		{name: "log", got: c.Log, want: Log{Level: "info", Format: "auto"}},
		{name: "driver", got: c.Storage.Driver, want: "sqlite"},
		{name: "require recording", got: c.Recordings.Require, want: true},
		{name: "recording compression", got: c.Recordings.Compression, want: "zstd"},
		{name: "scopes", got: fmt.Sprint(c.OIDC.Scopes), want: "[openid email profile]"},
		{name: "claims", got: c.OIDC.Claims, want: Claims{Email: "email", Name: "name", Groups: "groups"}},
		{name: "session_ttl", got: c.OIDC.SessionTTL.String(), want: "12h"},
		{name: "warn_before", got: fmt.Sprint(c.SSH.WarnBefore), want: "[5m 1m]"},
		{name: "max sessions", got: c.SSH.MaxSessionsPerPerson, want: 10},
		{name: "token_ttl", got: c.Postgres.TokenTTL.String(), want: "1h"},
		{name: "rule approvals", got: r.Approvals.Count, want: 1},
		{name: "rule extension approvals", got: c.Contract().Rules[0].ExtensionApprovals, want: 1},
		{name: "rule reason", got: r.RequireReason, want: true},
		{name: "rule pending_ttl", got: r.PendingTTL.String(), want: "1d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v; want %v", tt.got, tt.want)
			}
		})
	}
}

func TestListDefaults(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "contract:", `  postgres:
    - name: db
      address: db.internal:5432
      roles: [{name: ro, password_env: RO}]
notifications:
  webhooks: [{url: "http://hooks.internal/x"}]
contract:`, 1))
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "tls mode", got: c.Targets.Postgres[0].TLS.Mode, want: "verify-full"},
		{name: "role user", got: c.Targets.Postgres[0].Roles[0].User, want: "ro"},
		{name: "webhook format", got: c.Notifications.Webhooks[0].Format, want: "json"},
		{name: "webhook timeout", got: c.Notifications.Webhooks[0].Timeout.String(), want: "5s"},
		{name: "webhook expiring_before", got: c.Notifications.Webhooks[0].ExpiringBefore.String(), want: "10m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v; want %v", tt.got, tt.want)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	yaml := strings.Replace(minimal, "oidc:", `storage: {data_dir: ./state}
ssh: {host_ca_key_file: keys/host_ca, user_ca_key_file: /etc/jitproxy/user_ca}
oidc:
  client_secret_file: secrets/oidc`, 1)
	path := filepath.Join(dir, "jitproxy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load from another working directory than the file's: paths still
	// resolve against the file's directory.
	t.Chdir(t.TempDir())
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "data_dir", got: c.DataDir(), want: filepath.Join(dir, "state")},
		{name: "recordings", got: c.Recordings.Dir, want: filepath.Join(dir, "state", "recordings")},
		{name: "relative key", got: c.SSH.HostCAKeyFile, want: filepath.Join(dir, "keys", "host_ca")},
		{name: "absolute key", got: c.SSH.UserCAKeyFile, want: "/etc/jitproxy/user_ca"},
		{name: "secret file", got: c.OIDC.ClientSecret.File, want: filepath.Join(dir, "secrets", "oidc")},
		{name: "summary", got: c.Summary(), want: "1 SSH target, 0 PostgreSQL targets, 1 rule; storage sqlite at " + filepath.Join(dir, "state")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v; want %v", tt.got, tt.want)
			}
		})
	}
}

func TestSecretValue(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JITPROXY_TEST_SECRET", "from-env")
	t.Setenv("JITPROXY_TEST_EMPTY", "")
	tests := []struct {
		name    string
		secret  Secret
		want    string
		wantErr string
	}{
		{name: "inline", secret: InlineSecret("inline"), want: "inline"},
		{name: "file drops one newline", secret: Secret{File: file}, want: "from-file"},
		{name: "env", secret: Secret{Env: "JITPROXY_TEST_SECRET"}, want: "from-env"},
		{name: "missing file", secret: Secret{File: filepath.Join(dir, "nope")}, wantErr: "config: read secret: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "empty file", secret: Secret{File: empty}, wantErr: "config: secret file " + empty + " is empty"},
		{name: "empty env", secret: Secret{Env: "JITPROXY_TEST_EMPTY"}, wantErr: "config: secret environment variable JITPROXY_TEST_EMPTY is unset or empty"},
		{name: "unset", secret: Secret{}, wantErr: "config: secret is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.secret.Value()
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got != tt.want || gotErr != tt.wantErr {
				t.Errorf("got %q, %v; want %q, %v", got, gotErr, tt.want, tt.wantErr)
			}
		})
	}
}

// TestSecretNotFormatted checks a loaded config printed every way fmt can
// print it never shows an inline secret.
func TestSecretNotFormatted(t *testing.T) {
	const secret = "hunter2-DISTINCTIVE-7f3a"
	c := mustParse(t, strings.Replace(minimal, "client_id: jitproxy", "client_id: jitproxy\n  client_secret: "+secret, 1))
	if v, err := c.OIDC.ClientSecret.Value(); v != secret || err != nil {
		t.Fatalf("got %q, %v; want %q, nil", v, err, secret)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, *c); strings.Contains(got, secret) {
			t.Errorf("got %s showing the secret; want it hidden", format)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{name: "days", in: "2d", want: 48 * time.Hour},
		{name: "go syntax", in: "1h30m", want: 90 * time.Minute},
		{name: "quoted", in: `"45s"`, want: 45 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, strings.Replace(minimal, "max_duration: 4h", "max_duration: "+tt.in, 1))
			if got := c.Contract().Rules[0].MaxDuration; got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestAnchorsAndMerges checks YAML anchors, aliases and merge keys work as
// YAML says: keys given win over merged ones.
func TestAnchorsAndMerges(t *testing.T) {
	c := mustParse(t, minimal+`
    - &base
      name: base
      who: {groups: [eng]}
      targets: [web-1]
      logins: [ubuntu]
      max_duration: 1h
      approvals: {count: 0}
    - <<: *base
      name: derived
      max_duration: 2h
`)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "rules", got: len(c.Policy.Rules), want: 3},
		{name: "merged name", got: c.Policy.Rules[2].Name, want: "derived"},
		{name: "merged duration", got: c.Policy.Rules[2].MaxDuration.String(), want: "2h"},
		{name: "merged logins", got: fmt.Sprint(c.Policy.Rules[2].Logins), want: "[ubuntu]"},
		{name: "merged approvals", got: c.Policy.Rules[2].Approvals.Count, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v; want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParseWholeFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{name: "empty", yaml: "", want: "x.yaml: oidc.issuer: required (your OpenID Connect provider's issuer URL, e.g. https://login.example.com)\nx.yaml: oidc.client_id: required (jitproxy's client ID at the provider)"},
		{name: "two documents", yaml: minimal + "---\nserver: {}\n", want: "x.yaml:19: a second YAML document: a config file holds one (remove the ---)"},
		{name: "not a mapping", yaml: "- a\n", want: "x.yaml:1: want a mapping of fields, got a list"},
		{name: "merge of a scalar", yaml: "log: {<<: info}\n", want: `x.yaml:1: log: << merges a mapping or a list of mappings, not "info"`},
		{name: "given twice", yaml: strings.Replace(minimal, "  client_id: jitproxy", "  client_id: jitproxy\n  client_id: other", 1), want: "x.yaml:5: oidc.client_id: given twice (first at line 4)"},
		{name: "alias bomb", yaml: "server:\n  a: &a {x: 1}\n  b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n  c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n  d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n  e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n  f: &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\nlog: {<<: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]}\n", want: "log: the file expands to more than 100000 values (aliases nested too deep?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "x.yaml")
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v (%T); want Errors", err, err)
			}
			if got := err.Error(); !strings.Contains(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestContractFailsClosed checks that a ticket pattern that does not
// compile (a Config built in Go, never validated) refuses every ticket
// instead of dropping the requirement.
func TestContractFailsClosed(t *testing.T) {
	c := Default()
	c.Policy.Rules = []Rule{{Name: "r", TicketPattern: "(OPS"}}
	re := c.Contract().Rules[0].TicketPattern
	if re == nil {
		t.Fatal("got no ticket pattern; want one that matches nothing")
	}
	for _, ticket := range []string{"", "OPS-1", "(OPS"} {
		if re.MatchString(ticket) {
			t.Errorf("got a match for %q; want none", ticket)
		}
	}
}

func TestContractFollowsFields(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "      logins: [ubuntu]\n      max", "      logins: [\"*\"]\n      max", 1))
	c.Targets.SSH[0].Logins = []string{"alice"} // as jitproxy dev narrows its demo target
	who := amendment.Identity{Email: "a@example.com", Groups: []string{"eng"}}
	tests := []struct {
		name  string
		login string
		want  string
	}{
		{name: "offered", login: "alice", want: "web"},
		{name: "not offered", login: "root", want: `refused: rule "web": target web-1 has no login "root" (it offers alice)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := evaluate(c, who, amendment.Request{Target: "web-1", Login: tt.login, Duration: time.Hour, Reason: "x"})
			if got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestEmbeddedDev parses dev.yaml as `jitproxy dev` does without a config
// file: from the binary, relative paths resolving against the working
// directory.
func TestEmbeddedDev(t *testing.T) {
	data, err := configs.Files.ReadFile("dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	c, err := Parse(data, "dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.DataDir(), filepath.Join(dir, "jitproxy-data"); got != want {
		t.Errorf("got %v; want %v", got, want)
	}
}
