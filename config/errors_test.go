package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/errors/*.golden from the current output")

// TestLoadErrors loads each broken file in testdata/errors and compares
// every message with its golden file. Run with -update to rewrite them,
// then read the diff.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		want int // how many problems the golden file lists
	}{
		{name: "unknown_field_top", want: 2},
		{name: "unknown_field_nested", want: 3},
		{name: "bad_durations", want: 6},
		{name: "duplicate_names", want: 2},
		{name: "unknown_target", want: 2},
		{name: "glob_matches_nothing", want: 2},
		{name: "bad_regexp", want: 1},
		{name: "bad_compression", want: 1},
		{name: "two_secret_sources", want: 2},
		{name: "approvals_without_groups", want: 2},
		{name: "missing_required", want: 11},
		{name: "wrong_type", want: 8},
		{name: "not_offered", want: 5},
		{name: "bad_addresses", want: 8},
		{name: "syntax_error", want: 1},
		{name: "many_errors", want: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", "errors", tt.name+".yaml")
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %v, nil; want errors", path, c.Summary())
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) error is %T; want Errors", path, err)
			}
			got := err.Error() + "\n"
			golden := filepath.Join("testdata", "errors", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) errors:\n%s\nwant (%s):\n%s", path, got, golden, want)
			}
			if len(errs) != tt.want {
				t.Errorf("got %v errors; want %v", len(errs), tt.want)
			}
			for i, e := range errs {
				if e.File != path || e.Line <= 0 {
					t.Errorf("error %d: got file %q line %v; want %q and a line", i, e.File, e.Line, path)
				}
				if i > 0 && e.Line < errs[i-1].Line {
					t.Errorf("error %d: got line %v after line %v; want file order", i, e.Line, errs[i-1].Line)
				}
			}
		})
	}
}

// TestSecretsNeverPrinted breaks files around a distinctive secret in every
// way a secret field can be broken, and checks the errors never show it.
func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-DISTINCTIVE-7f3a"
	tests := []struct {
		name string
		yaml string
		want string // a message the errors must contain
	}{
		{
			name: "two sources",
			yaml: "oidc:\n  issuer: https://login.example.com\n  client_id: x\n  client_secret: " + secret + "\n  client_secret_env: X\n",
			want: "oidc.client_secret_env: set at most one of client_secret, client_secret_file and client_secret_env",
		},
		{
			name: "second source first",
			yaml: "oidc:\n  issuer: https://login.example.com\n  client_id: x\n  client_secret_env: X\n  client_secret: " + secret + "\n",
			want: "oidc.client_secret: set at most one of",
		},
		{
			name: "list",
			yaml: "oidc:\n  issuer: https://login.example.com\n  client_id: x\n  client_secret: [" + secret + "]\n",
			want: "oidc.client_secret: want a string, got a list",
		},
		{
			name: "mapping",
			yaml: "oidc:\n  issuer: https://login.example.com\n  client_id: x\n  client_secret: {" + secret + ": " + secret + "}\n",
			want: "oidc.client_secret: want a string, got a mapping",
		},
		{
			name: "given twice",
			yaml: "oidc:\n  issuer: https://login.example.com\n  client_id: x\n  client_secret: " + secret + "\n  client_secret: " + secret + "\n",
			want: "oidc.client_secret: given twice (first at line 4)",
		},
		{
			name: "misspelt key",
			yaml: "targets:\n  postgres:\n    - name: db\n      address: db:5432\n      roles: [{name: ro, pasword: " + secret + "}]\n",
			want: `unknown field "pasword" (did you mean password?)`,
		},
		{
			name: "password beside other errors",
			yaml: "storage: {postgres_dsn: \"postgres://u:" + secret + "@h/db\"}\ndev_idp:\n  users:\n    - {username: a, password: " + secret + ", password_file: /x, email: nope}\n",
			want: "storage.postgres_dsn: only used with driver postgres",
		},
		{
			name: "unterminated quote",
			yaml: "oidc:\n  client_secret: \"" + secret + "\n  client_id: x\n",
			want: "bad YAML",
		},
		{
			name: "aliased",
			yaml: "x: &s " + secret + "\noidc:\n  client_secret: *s\n",
			want: `unknown field "x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "secret.yaml")
			if err == nil {
				t.Fatal("Parse succeeded; want errors")
			}
			got := err.Error()
			if strings.Contains(got, secret) || strings.Contains(got, "hunter2") {
				t.Errorf("errors show the secret:\n%s", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("got errors:\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}

func TestErrorRendering(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{name: "all", err: Error{File: "a.yaml", Line: 3, Path: "server.api_listen", Message: "m"}, want: "a.yaml:3: server.api_listen: m"},
		{name: "no line", err: Error{File: "a.yaml", Path: "oidc.issuer", Message: "m"}, want: "a.yaml: oidc.issuer: m"},
		{name: "no path", err: Error{File: "a.yaml", Line: 2, Message: "m"}, want: "a.yaml:2: m"},
		{name: "no file", err: Error{Line: 2, Path: "p", Message: "m"}, want: "line 2: p: m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}
