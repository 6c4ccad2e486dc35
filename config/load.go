package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// Load reads and parses the configuration file at path. A file that does
// not parse or validate gives Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a configuration file's contents. name is the file's path:
// errors name it, and relative paths in the file resolve against its
// directory (the working directory if name has none). On failure the error
// is Errors, listing every problem found in file order.
func Parse(data []byte, name string) (*Config, error) {
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, err
	}
	c := Default()
	d := newDecoder(name)
	if root != nil {
		d.decode(root, reflect.ValueOf(c).Elem(), "")
	}
	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		return nil, fmt.Errorf("config: resolve the directory of %s: %w", name, err)
	}
	c.complete(dir)
	ck := &checker{file: name, lines: d.lines, skip: d.reported()}
	c.check(ck)
	errs := append(d.errs, ck.errs...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
		return nil, errs
	}
	return c, nil
}

// complete fills in what depends on other fields or on the file's
// directory: absolute paths, role users, the recordings directory and the
// public URL of a loopback API.
func (c *Config) complete(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Storage.DataDir)
	abs(&c.Storage.PostgresDSN.File)
	if c.Recordings.Dir == "" && c.Storage.DataDir != "" {
		c.Recordings.Dir = filepath.Join(c.Storage.DataDir, "recordings")
	}
	abs(&c.Recordings.Dir)
	abs(&c.OIDC.ClientSecret.File)
	for i := range c.DevIdP.Users {
		abs(&c.DevIdP.Users[i].Password.File)
	}
	abs(&c.SSH.HostCAKeyFile)
	abs(&c.SSH.UserCAKeyFile)
	abs(&c.Postgres.TLSCertFile)
	abs(&c.Postgres.TLSKeyFile)
	for i := range c.Targets.Postgres {
		t := &c.Targets.Postgres[i]
		abs(&t.TLS.CAFile)
		abs(&t.TLS.CertFile)
		abs(&t.TLS.KeyFile)
		for j := range t.Roles {
			r := &t.Roles[j]
			abs(&r.Password.File)
			if r.User == "" {
				r.User = r.Name
			}
		}
	}
	for i := range c.Notifications.Webhooks {
		abs(&c.Notifications.Webhooks[i].Secret.File)
	}
	c.Server.PublicURL = strings.TrimSuffix(c.Server.PublicURL, "/")
	if c.Server.PublicURL == "" && isLoopbackAddr(c.Server.APIListen) {
		c.Server.PublicURL = "http://" + c.Server.APIListen
	}
}
