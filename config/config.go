// Package config loads and validates jitproxy's YAML configuration file and
// turns it into the values each component takes. It reads files; it never
// reads flags or the environment, except secrets a field names explicitly,
// e.g. password_env, and only when Secret.Value is called.
//
// The file format is documented field by field in configs/jitproxy.example.yaml.
package config

import (
	"cmp"
	"fmt"
	"path/filepath"
	"regexp"
	"time"
)

// Config is the whole configuration file. Load and Parse return it with
// defaults applied, relative paths made absolute against the file's
// directory, and every field validated.
type Config struct {
	Server        Server        `yaml:"server"`
	Log           Log           `yaml:"log"`
	Storage       Storage       `yaml:"storage"`
	Recordings    Recordings    `yaml:"recordings"`
	OIDC          OIDC          `yaml:"oidc"`
	DevIdP        DevIdP        `yaml:"dev_idp"`
	SSH           SSH           `yaml:"ssh"`
	Postgres      Postgres      `yaml:"postgres"`
	Targets       Targets       `yaml:"targets"`
	Policy        Policy        `yaml:"contract"`
	Notifications Notifications `yaml:"notifications"`
}

// Server is where jitproxy listens.
type Server struct {
	// APIListen is the HTTP API and web UI address. Default 127.0.0.1:8080.
	APIListen string `yaml:"api_listen"`
	// PublicURL is how browsers and CLIs reach the API (behind a load
	// balancer, its https URL). Empty means http://API_LISTEN, which is only
	// allowed when APIListen is a loopback address.
	PublicURL string `yaml:"public_url"`
	// SSHListen is the SSH bastion address; empty disables the bastion.
	// Default 127.0.0.1:2222.
	SSHListen string `yaml:"ssh_listen"`
	// SSHPublicAddress is the host:port people's ssh connects to (behind a
	// load balancer, its name); the bastion's host certificate names its
	// host. Empty means SSHListen, which must then name a host (not
	// 0.0.0.0 or an empty host).
	SSHPublicAddress string `yaml:"ssh_public_address"`
	// PostgresListen is the PostgreSQL endpoint address; empty disables it.
	// Default 127.0.0.1:5433.
	PostgresListen string `yaml:"postgres_listen"`
	// PostgresPublicAddress is the host:port people's psql connects to.
	// Empty means PostgresListen, which must then name a host.
	PostgresPublicAddress string `yaml:"postgres_public_address"`
	// ShutdownTimeout bounds a graceful shutdown. Default 15s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MaxBodyBytes bounds an API request body. Default 65536.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is console, json, or auto: console on a terminal, json
	// otherwise. Default auto.
	Format string `yaml:"format"`
}

// Storage says where amendments, the audit trail and keys live.
type Storage struct {
	// Driver is sqlite (embedded, one node) or postgres (many nodes).
	// Default sqlite.
	Driver string `yaml:"driver"`
	// DataDir holds the SQLite database, generated CA keys and, by default,
	// recordings. Default ./jitproxy-data next to the config file; after
	// Load it is absolute.
	DataDir string `yaml:"data_dir"`
	// PostgresDSN is the connection string of the shared store (keys
	// postgres_dsn, postgres_dsn_file, postgres_dsn_env). Driver postgres
	// only, and required there.
	PostgresDSN Secret `yaml:"postgres_dsn"`
}

// Recordings configures session recordings.
type Recordings struct {
	// Dir is where recordings are written. Empty in the file means
	// DATA_DIR/recordings; after Load it is always set and absolute.
	Dir string `yaml:"dir"`
	// RecordInput records SSH keystrokes too (asciicast "i" events). They
	// include whatever people type, passwords at prompts as well. Default
	// false.
	RecordInput bool `yaml:"record_input"`
	// Require refuses a session whose recording cannot start. false lets the
	// session go on unrecorded (the audit trail says so). Default true.
	Require bool `yaml:"require"`
	// Compression is how recording files are stored: "zstd" (ID.cast.zst,
	// ID.jsonl.zst) or "none" (plain ID.cast, ID.jsonl). Default zstd.
	Compression string `yaml:"compression"`
}

// OIDC is the identity provider people log in with.
type OIDC struct {
	// Issuer is the provider's issuer URL. Required; https unless it is on
	// a loopback address.
	Issuer string `yaml:"issuer"`
	// ClientID is jitproxy's client at the provider. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client's secret (keys client_secret,
	// client_secret_file, client_secret_env). Empty for a public client.
	ClientSecret Secret `yaml:"client_secret"`
	// Scopes are requested at login; they must include openid. Default
	// openid, email, profile.
	Scopes []string `yaml:"scopes"`
	// Claims names the ID token claims jitproxy reads.
	Claims Claims `yaml:"claims"`
	// SessionTTL is how long a jitproxy login lasts. Default 12h.
	SessionTTL Duration `yaml:"session_ttl"`
}

// Claims names the ID token claims that make an identity.
type Claims struct {
	Email  string `yaml:"email"`  // default "email"
	Name   string `yaml:"name"`   // default "name"
	Groups string `yaml:"groups"` // default "groups"
}

// DevIdP is the identity provider that `jitproxy dev` embeds. Other commands
// ignore it.
type DevIdP struct {
	Users []DevUser `yaml:"users"`
}

// DevUser is one person of the dev identity provider.
type DevUser struct {
	Username string `yaml:"username"`
	// Password is what the login form takes (keys password, password_file,
	// password_env).
	Password Secret   `yaml:"password"`
	Email    string   `yaml:"email"`
	Name     string   `yaml:"name"`
	Groups   []string `yaml:"groups"`
}

// SSH configures the SSH bastion and its certificate authorities.
type SSH struct {
	// UserCertTTL caps the life of the user certificates `jitproxy login`
	// gets; they never outlive the holder's latest active amendment either.
	// Default 8h.
	UserCertTTL Duration `yaml:"user_cert_ttl"`
	// HostCAKeyFile and UserCAKeyFile are the CA private keys (OpenSSH
	// format). Empty means a key generated on first start and kept in
	// DATA_DIR. After Load a set path is absolute.
	HostCAKeyFile string `yaml:"host_ca_key_file"`
	UserCAKeyFile string `yaml:"user_ca_key_file"`
	// TrustedUserCAKeys are further user CA public keys (authorized_keys
	// format) the bastion accepts, for rotating the user CA.
	TrustedUserCAKeys []string `yaml:"trusted_user_ca_keys"`
	// WarnBefore are the times before expiry at which a live session is
	// told it will be cut. Default 5m, 1m.
	WarnBefore []Duration `yaml:"warn_before"`
	// MaxSessionsPerPerson bounds one person's concurrent SSH sessions; 0
	// means no limit. Default 10.
	MaxSessionsPerPerson int `yaml:"max_sessions_per_person"`
	// HandshakeTimeout bounds each SSH handshake, outer and upstream.
	// Default 10s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
}

// Postgres configures the PostgreSQL endpoint.
type Postgres struct {
	// TLSCertFile and TLSKeyFile are the endpoint's certificate and key
	// (PEM). Both or neither; `jitproxy dev` makes one when they are empty.
	// After Load a set path is absolute.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// AllowPlaintextLoopback accepts a password (DB token) without TLS
	// from loopback clients. Default false.
	AllowPlaintextLoopback bool `yaml:"allow_plaintext_loopback"`
	// RecordParameters records bind parameter values in query logs, not
	// only their count. Default false.
	RecordParameters bool `yaml:"record_parameters"`
	// TokenTTL caps the life of a DB token (the psql password); it never
	// outlives its amendment either. Default 1h.
	TokenTTL Duration `yaml:"token_ttl"`
	// HandshakeTimeout bounds the startup phase, client and upstream.
	// Default 10s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
}

// Targets are the upstreams people may ask for. Names are unique across
// both kinds.
type Targets struct {
	SSH      []SSHTarget      `yaml:"ssh"`
	Postgres []PostgresTarget `yaml:"postgres"`
}

// SSHTarget is an upstream sshd.
type SSHTarget struct {
	// Name is what people type: ssh ubuntu@NAME. Letters, digits, '.', '-'
	// and '_'. Required.
	Name string `yaml:"name"`
	// Address is host:port. Required unless DevSSHD.
	Address string `yaml:"address"`
	// Logins are the Unix users that may be requested; empty means any.
	Logins []string `yaml:"logins"`
	// HostKeys pins the target's host public keys (authorized_keys format);
	// HostCAs trusts host certificates signed by these CA public keys. One
	// of the two is required unless DevSSHD: jitproxy never skips host-key
	// verification.
	HostKeys []string `yaml:"host_keys"`
	HostCAs  []string `yaml:"host_cas"`
	// DevSSHD marks the demo target that `jitproxy dev` starts and wires up
	// itself (address and host key). `jitproxy serve` must refuse it.
	DevSSHD bool `yaml:"dev_sshd"`
}

// PostgresTarget is an upstream PostgreSQL server.
type PostgresTarget struct {
	// Name is what people type: psql dbname=NAME. Required.
	Name string `yaml:"name"`
	// Address is host:port. Required unless DevPostgres.
	Address string `yaml:"address"`
	// Databases may be requested; empty means any.
	Databases []string `yaml:"databases"`
	// TLS is how jitproxy connects upstream.
	TLS UpstreamTLS `yaml:"tls"`
	// Roles are what people request, each with the upstream credentials
	// the proxy injects. At least one.
	Roles []Role `yaml:"roles"`
	// DevPostgres marks the demo target that `jitproxy dev` starts itself:
	// it fills in Address and creates the roles and databases listed.
	// `jitproxy serve` must refuse it.
	DevPostgres bool `yaml:"dev_postgres"`
}

// UpstreamTLS is how jitproxy talks TLS to an upstream PostgreSQL server.
type UpstreamTLS struct {
	// Mode is disable, require, verify-ca or verify-full (libpq's
	// sslmode). Default verify-full.
	Mode string `yaml:"mode"`
	// CAFile verifies the server (PEM); empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified; empty means Address's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate (PEM), both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Role is a PostgreSQL role people request, and the credentials jitproxy
// logs in upstream with. People never see them.
type Role struct {
	// Name is what people request (--role). Required.
	Name string `yaml:"name"`
	// User is the upstream user. Default Name.
	User string `yaml:"user"`
	// Password is the upstream password (keys password, password_file,
	// password_env). Required unless the target's TLS has a client
	// certificate or the target is DevPostgres.
	Password Secret `yaml:"password"`
}

// Policy is the `contract:` section: the standing policy that says who may
// request what. Config.Contract turns it into an *amendment.Contract.
type Policy struct {
	// AdminGroups may revoke any amendment.
	AdminGroups []string `yaml:"admin_groups"`
	// AuditorGroups may read every amendment, recording and the audit
	// trail, and change nothing.
	AuditorGroups []string `yaml:"auditor_groups"`
	// Rules are tried in order; the first that allows a whole request
	// grants it.
	Rules []Rule `yaml:"rules"`
}

// Rule is one clause of the contract. Defaults for a rule in the file:
// approvals.count 1, require_reason true, pending_ttl 24h.
type Rule struct {
	// Name is unique among rules. Required.
	Name string `yaml:"name"`
	// Who may request under this rule. At least one group or email.
	Who Who `yaml:"who"`
	// Targets are target names or globs ("web-*"). Each must name or match
	// a configured target.
	Targets []string `yaml:"targets"`
	// Logins, Roles and Databases may be requested on the targets; "*"
	// means anything the target offers, empty means nothing of that kind.
	Logins    []string `yaml:"logins"`
	Roles     []string `yaml:"roles"`
	Databases []string `yaml:"databases"`
	// PortForwarding lets requests ask for SSH port forwarding.
	PortForwarding bool `yaml:"port_forwarding"`
	// ReadOnly makes every PostgreSQL session under this rule read-only.
	ReadOnly bool `yaml:"read_only"`
	// MaxDuration bounds an amendment's active window, extensions included.
	// Required.
	MaxDuration Duration `yaml:"max_duration"`
	// Approvals says who must approve.
	Approvals Approvals `yaml:"approvals"`
	// RequireReason refuses requests with no reason.
	RequireReason bool `yaml:"require_reason"`
	// TicketPattern, if set, is a regexp (RE2) every request's ticket must
	// match; a request with no ticket is then refused.
	TicketPattern string `yaml:"ticket_pattern"`
	// PendingTTL is how long a request waits for approval before it is
	// withdrawn.
	PendingTTL Duration `yaml:"pending_ttl"`
	// MaxScheduleAhead bounds how far ahead a start may be scheduled; zero
	// means PendingTTL.
	MaxScheduleAhead Duration `yaml:"max_schedule_ahead"`

	ticket *regexp.Regexp // TicketPattern, compiled by validation
}

// Who says who may request under a rule: members of any group, or anyone
// with one of the emails.
type Who struct {
	Groups []string `yaml:"groups"`
	Emails []string `yaml:"emails"`
}

// Approvals says how many distinct people must approve, and who may.
type Approvals struct {
	// Count approvals are needed; 0 means the policy approves by itself.
	Count int `yaml:"count"`
	// Groups whose members may approve or deny. Required when Count or
	// ExtensionCount is above 0.
	Groups []string `yaml:"groups"`
	// ExtensionCount approvals are needed for an extension; nil means
	// Count.
	ExtensionCount *int `yaml:"extension_count"`
}

// Notifications are messages jitproxy sends about amendments.
type Notifications struct {
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is an HTTP endpoint jitproxy POSTs amendment events to.
type Webhook struct {
	// URL is http or https. Required.
	URL string `yaml:"url"`
	// Format is json (jitproxy's event) or slack (a Slack message).
	// Default json.
	Format string `yaml:"format"`
	// Events filters what is sent; empty means all. See WebhookEvents.
	Events []string `yaml:"events"`
	// Secret, if set, signs each body with HMAC-SHA256 (keys secret,
	// secret_file, secret_env).
	Secret Secret `yaml:"secret"`
	// Timeout bounds one delivery. Default 5s.
	Timeout Duration `yaml:"timeout"`
	// ExpiringBefore is when the expiring event fires, before expiry.
	// Default 10m.
	ExpiringBefore Duration `yaml:"expiring_before"`
}

// WebhookEvents lists the event names a webhook may filter on.
func WebhookEvents() []string {
	return []string{"requested", "approved", "activated", "denied", "withdrawn", "revoked", "expiring", "expired", "extension_requested", "extended"}
}

// Default returns the configuration an empty file gives: everything that
// has a default set, nothing that must be said explicitly (the OIDC issuer
// and client, targets, rules).
func Default() *Config {
	return &Config{
		Server: Server{
			APIListen:       "127.0.0.1:8080",
			SSHListen:       "127.0.0.1:2222",
			PostgresListen:  "127.0.0.1:5433",
			ShutdownTimeout: Duration(15 * time.Second),
			MaxBodyBytes:    64 << 10,
		},
		Log:        Log{Level: "info", Format: "auto"},
		Storage:    Storage{Driver: "sqlite", DataDir: "jitproxy-data"},
		Recordings: Recordings{Require: true, Compression: "zstd"},
		OIDC: OIDC{
			Scopes:     []string{"openid", "email", "profile"},
			Claims:     Claims{Email: "email", Name: "name", Groups: "groups"},
			SessionTTL: Duration(12 * time.Hour),
		},
		SSH: SSH{
			UserCertTTL:          Duration(8 * time.Hour),
			WarnBefore:           []Duration{Duration(5 * time.Minute), Duration(time.Minute)},
			MaxSessionsPerPerson: 10,
			HandshakeTimeout:     Duration(10 * time.Second),
		},
		Postgres: Postgres{
			TokenTTL:         Duration(time.Hour),
			HandshakeTimeout: Duration(10 * time.Second),
		},
	}
}

// defaulter is implemented by list elements that have defaults of their
// own; the decoder calls setDefaults before it decodes the element.
type defaulter interface{ setDefaults() }

func (t *PostgresTarget) setDefaults() { t.TLS.Mode = "verify-full" }

func (r *Rule) setDefaults() {
	r.Approvals.Count = 1
	r.RequireReason = true
	r.PendingTTL = Duration(24 * time.Hour)
}

func (w *Webhook) setDefaults() {
	w.Format = "json"
	w.Timeout = Duration(5 * time.Second)
	w.ExpiringBefore = Duration(10 * time.Minute)
}

// DataDir returns the absolute data directory.
func (c *Config) DataDir() string {
	if abs, err := filepath.Abs(c.Storage.DataDir); err == nil {
		return abs
	}
	return c.Storage.DataDir
}

// Summary describes the configuration in one line for the startup log:
// "2 SSH targets, 1 PostgreSQL target, 4 rules; storage sqlite at /var/lib/jitproxy".
func (c *Config) Summary() string {
	s := fmt.Sprintf("%s, %s, %s; storage %s", plural(len(c.Targets.SSH), "SSH target"),
		plural(len(c.Targets.Postgres), "PostgreSQL target"), plural(len(c.Policy.Rules), "rule"), c.Storage.Driver)
	if c.Storage.Driver == "postgres" {
		return s + " (DSN from " + c.Storage.PostgresDSN.String() + ")"
	}
	return s + " at " + c.DataDir()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// SSHAddress is the host:port people's ssh reaches the bastion at.
func (s Server) SSHAddress() string { return cmp.Or(s.SSHPublicAddress, s.SSHListen) }

// PostgresAddress is the host:port people's psql reaches the endpoint at.
func (s Server) PostgresAddress() string { return cmp.Or(s.PostgresPublicAddress, s.PostgresListen) }
