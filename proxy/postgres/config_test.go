package postgres

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNew refuses configurations that would be unsafe or cannot work,
// saying which field is wrong.
func TestNew(t *testing.T) {
	good := func() Config {
		s := fuzzServer(t)
		return s.cfg
	}
	target := func(edit func(*Target)) func(*Config) {
		return func(c *Config) {
			tg := Target{Name: "app-db", Address: "127.0.0.1:5432", Roles: map[string]Role{"app_ro": {Name: "app_ro"}}, TLS: UpstreamTLS{Mode: "disable"}}
			edit(&tg)
			c.Targets = map[string]Target{"app-db": tg}
		}
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		name string
		edit func(*Config)
		want string // in the error; "" means no error
	}{
		{name: "good", edit: func(*Config) {}},
		{name: "no tls", edit: func(c *Config) { c.TLS = nil }, want: "TLS is nil"},
		{name: "plaintext loopback", edit: func(c *Config) { c.TLS, c.AllowPlaintextLoopback = nil, true }},
		{name: "tls without certificate", edit: func(c *Config) { c.TLS = &tls.Config{} }, want: "TLS has no certificate"},
		{name: "no tokens", edit: func(c *Config) { c.Tokens = nil }, want: "Tokens is nil"},
		{name: "no access", edit: func(c *Config) { c.Access = nil }, want: "Access is nil"},
		{name: "no registry", edit: func(c *Config) { c.Registry = nil }, want: "Registry is nil"},
		{name: "recording required without recorder", edit: func(c *Config) { c.RequireRecording = true }, want: "RequireRecording without a Recorder"},
		{name: "negative timeout", edit: func(c *Config) { c.StartupTimeout = -1 }, want: "negative"},
		{name: "name mismatch", edit: target(func(t *Target) { t.Name = "other" }), want: `target app-db: Name is "other"`},
		{name: "slash in name", edit: func(c *Config) {
			c.Targets = map[string]Target{"a/b": {Name: "a/b", Address: "h:1", Roles: map[string]Role{"r": {Name: "r"}}, TLS: UpstreamTLS{Mode: "disable"}}}
		}, want: "no '/'"},
		{name: "no roles", edit: target(func(t *Target) { t.Roles = nil }), want: "no Roles"},
		{name: "role name mismatch", edit: target(func(t *Target) { t.Roles = map[string]Role{"a": {Name: "b"}} }), want: `role "a" has Name "b"`},
		{name: "bad address", edit: target(func(t *Target) { t.Address = "nowhere" }), want: "not host:port"},
		{name: "bad port", edit: target(func(t *Target) { t.Address = "h:pg" }), want: "no numeric port"},
		{name: "bad mode", edit: target(func(t *Target) { t.TLS.Mode = "prefer" }), want: `TLS Mode "prefer"`},
		{name: "disable with a CA", edit: target(func(t *Target) { t.TLS.CAFile = notPEM }), want: `"disable" with CAFile`},
		{name: "CA not PEM", edit: target(func(t *Target) { t.TLS = UpstreamTLS{Mode: "verify-full", CAFile: notPEM} }), want: "holds no PEM certificate"},
		{name: "cert without key", edit: target(func(t *Target) { t.TLS = UpstreamTLS{Mode: "require", CertFile: notPEM} }), want: "CertFile and KeyFile go together"},
		{name: "default mode verify-full", edit: target(func(t *Target) { t.TLS = UpstreamTLS{} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.edit(&cfg)
			_, err := New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errConfig)):
				t.Errorf("got %v; want an invalid config error with %q", err, tt.want)
			}
		})
	}
}
