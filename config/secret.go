package config

import (
	"fmt"
	"os"
	"strings"
)

// Secret is a value that must never be printed: a client secret, a
// password, a DSN. The file gives it one of three ways, for a field named
// password: password (the value inline), password_file (a file holding
// it) or password_env (an environment variable holding it); at most one.
// Files and the environment are read only when Value is called, so a
// rotated secret is picked up by the next call.
//
// Secret's String and GoString describe where the value comes from, never
// the value, so a Secret is safe in logs and error messages.
type Secret struct {
	value string // given inline; unexported so that no encoder sees it
	// File is the path of a file holding the value; after Load it is
	// absolute. One trailing newline is dropped.
	File string
	// Env is the name of an environment variable holding the value.
	Env string
}

// InlineSecret returns a Secret whose value is v, as if given inline.
func InlineSecret(v string) Secret { return Secret{value: v} }

// IsSet reports whether the Secret names a source.
func (s Secret) IsSet() bool { return s.value != "" || s.File != "" || s.Env != "" }

// Value returns the secret, reading its file or environment variable now.
// An empty file or variable is an error: a secret that is set is never
// empty. Errors name the source, never the value.
func (s Secret) Value() (string, error) {
	switch {
	case s.value != "":
		return s.value, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("config: read secret: %w", err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("config: secret file %s is empty", s.File)
		}
		return v, nil
	case s.Env != "":
		v := os.Getenv(s.Env)
		if v == "" {
			return "", fmt.Errorf("config: secret environment variable %s is unset or empty", s.Env)
		}
		return v, nil
	}
	return "", fmt.Errorf("config: secret is not set")
}

// String says where the secret comes from: "file /etc/jitproxy/x",
// "env JITPROXY_X", "inline value" or "unset".
func (s Secret) String() string {
	switch {
	case s.value != "":
		return "inline value"
	case s.File != "":
		return "file " + s.File
	case s.Env != "":
		return "env " + s.Env
	}
	return "unset"
}

// GoString is String, so that %#v does not print the value either.
func (s Secret) GoString() string { return "config.Secret(" + s.String() + ")" }
