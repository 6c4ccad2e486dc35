package config

import (
	"golang.org/x/crypto/ssh"
)

func (c *Config) checkTargets(ck *checker) {
	seen := make(map[string]string) // target name → path of its first name
	checkName := func(path, name string) {
		switch first, dup := seen[name]; {
		case name == "":
			ck.errorf(path, "required (what people type after ssh or in psql's dbname)")
		case !validName(name):
			ck.errorf(path, "bad name %q: use letters, digits, '.', '-' and '_', starting with a letter or digit", name)
		case dup:
			ck.errorf(path, "duplicate target name %q (first at %s, line %d)", name, first, ck.line(first))
		default:
			seen[name] = path
		}
	}
	for i, t := range c.Targets.SSH {
		p := index("targets.ssh", i)
		checkName(p+".name", t.Name)
		switch {
		case t.Address != "":
			checkDial(ck, p+".address", t.Address, "web-1.internal:22")
		case !t.DevSSHD:
			ck.errorf(p+".address", "required (host:port of the target's sshd, e.g. web-1.internal:22)")
		}
		checkNames(ck, p+".logins", t.Logins)
		if len(t.HostKeys) == 0 && len(t.HostCAs) == 0 && !t.DevSSHD {
			ck.errorf(p+".host_keys", "required: pin the target's host keys with host_keys, or trust its host CA with host_cas; jitproxy never skips host-key verification")
		}
		for j, k := range t.HostKeys {
			checkPublicKey(ck, index(p+".host_keys", j), k)
		}
		for j, k := range t.HostCAs {
			checkPublicKey(ck, index(p+".host_cas", j), k)
		}
	}
	for i, t := range c.Targets.Postgres {
		p := index("targets.postgres", i)
		checkName(p+".name", t.Name)
		switch {
		case t.Address != "":
			checkDial(ck, p+".address", t.Address, "db-1.internal:5432")
		case !t.DevPostgres:
			ck.errorf(p+".address", "required (host:port of the PostgreSQL server, e.g. db-1.internal:5432)")
		}
		checkNames(ck, p+".databases", t.Databases)
		oneOf(ck, p+".tls.mode", t.TLS.Mode, "disable", "require", "verify-ca", "verify-full")
		checkPair(ck, p+".tls", "cert_file", t.TLS.CertFile, "key_file", t.TLS.KeyFile)
		if t.TLS.Mode == "disable" {
			for _, f := range []struct{ name, v string }{{"ca_file", t.TLS.CAFile}, {"cert_file", t.TLS.CertFile}, {"server_name", t.TLS.ServerName}} {
				if f.v != "" {
					ck.errorf(p+".tls."+f.name, "unused with mode disable: use require, verify-ca or verify-full")
				}
			}
		}
		if len(t.Roles) == 0 {
			ck.errorf(p+".roles", "required: list the roles people may request, each with its upstream credentials")
		}
		roles := make(map[string]bool)
		for j, r := range t.Roles {
			rp := index(p+".roles", j)
			switch {
			case r.Name == "":
				ck.errorf(rp+".name", "required (the role people request with --role)")
			case roles[r.Name]:
				ck.errorf(rp+".name", "duplicate role %q", r.Name)
			}
			roles[r.Name] = true
			if !r.Password.IsSet() && t.TLS.CertFile == "" && !t.DevPostgres {
				ck.errorf(rp+".password", "required: set password_env, password_file or password, or give the target a TLS client certificate (tls.cert_file, tls.key_file)")
			}
		}
	}
}

// validName reports whether a target name is safe where people type it:
// an SSH host name, a psql dbname, a glob in a rule.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '-' && r != '_') {
			return false
		}
	}
	return true
}

// checkPublicKey checks an SSH public key in authorized_keys format.
func checkPublicKey(ck *checker, path, key string) {
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key)); err != nil {
		ck.errorf(path, "bad public key: want one line as in a .pub file, e.g. \"ssh-ed25519 AAAAC3Nz...\"")
	}
}
