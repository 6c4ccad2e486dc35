package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// checker collects the problems validation finds, each with the line the
// decoder recorded for its path (or for the nearest enclosing path, when
// the field is missing).
type checker struct {
	file  string
	lines map[string]int  // path → line, from the decoder
	skip  map[string]bool // paths the decoder already reported
	errs  Errors
}

func (ck *checker) errorf(path, format string, args ...any) {
	if ck.skip[path] {
		return
	}
	ck.errs = append(ck.errs, Error{File: ck.file, Line: ck.line(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

// reported reports whether the decoder already found a problem at any of
// paths, so that what follows from it is not reported as well.
func (ck *checker) reported(paths ...string) bool {
	for _, p := range paths {
		if ck.skip[p] {
			return true
		}
	}
	return false
}

func (ck *checker) line(path string) int {
	for path != "" {
		if l, ok := ck.lines[path]; ok {
			return l
		}
		path = parent(path)
	}
	return 0
}

// parent strips the last element of a path: a.b[2].c → a.b[2] → a.b → a.
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// check validates the whole configuration.
func (c *Config) check(ck *checker) {
	c.checkServer(ck)
	c.checkLog(ck)
	c.checkStorage(ck)
	c.checkRecordings(ck)
	c.checkOIDC(ck)
	c.checkDevIdP(ck)
	c.checkSSH(ck)
	c.checkPostgres(ck)
	c.checkTargets(ck)
	c.checkPolicy(ck)
	c.checkNotifications(ck)
}

func (c *Config) checkServer(ck *checker) {
	s := c.Server
	if s.APIListen == "" {
		ck.errorf("server.api_listen", "required (host:port the API listens on, e.g. 127.0.0.1:8080)")
	} else {
		checkListen(ck, "server.api_listen", s.APIListen)
	}
	for _, l := range []struct{ name, listen, public, port string }{
		{"ssh", s.SSHListen, s.SSHPublicAddress, "2222"},
		{"postgres", s.PostgresListen, s.PostgresPublicAddress, "5433"},
	} {
		if l.listen == "" {
			continue
		}
		checkListen(ck, "server."+l.name+"_listen", l.listen)
		if l.public != "" {
			checkDial(ck, "server."+l.name+"_public_address", l.public, "jitproxy.example.com:"+l.port)
		} else if host, port, err := net.SplitHostPort(l.listen); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
			ck.errorf("server."+l.name+"_public_address", "required when %s_listen (%s) names no host: the host:port people connect to, e.g. jitproxy.example.com:%s", l.name, l.listen, port)
		}
	}
	listens := []struct{ path, addr string }{
		{"server.api_listen", s.APIListen}, {"server.ssh_listen", s.SSHListen}, {"server.postgres_listen", s.PostgresListen},
	}
	for i, a := range listens {
		for _, b := range listens[:i] {
			if a.addr != "" && sameListener(a.addr, b.addr) {
				ck.errorf(a.path, "%s is %s's address too: each listener needs its own port", a.addr, b.path)
			}
		}
	}
	switch {
	case s.PublicURL != "":
		checkURL(ck, "server.public_url", s.PublicURL, true)
	case splits(s.APIListen):
		ck.errorf("server.public_url", "required when api_listen is not a loopback address: the https URL browsers and CLIs reach jitproxy at")
	}
	checkPositive(ck, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxBodyBytes <= 0 {
		ck.errorf("server.max_body_bytes", "must be positive, e.g. 65536")
	}
}

func (c *Config) checkLog(ck *checker) {
	oneOf(ck, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(ck, "log.format", c.Log.Format, "auto", "console", "json")
}

func (c *Config) checkRecordings(ck *checker) {
	oneOf(ck, "recordings.compression", c.Recordings.Compression, "zstd", "none")
}

func (c *Config) checkStorage(ck *checker) {
	s := c.Storage
	oneOf(ck, "storage.driver", s.Driver, "sqlite", "postgres")
	if s.DataDir == "" {
		ck.errorf("storage.data_dir", "required (the directory jitproxy keeps its state in)")
	}
	switch {
	case s.Driver == "postgres" && !s.PostgresDSN.IsSet():
		ck.errorf("storage.postgres_dsn", "required with driver postgres: set postgres_dsn_env or postgres_dsn_file")
	case s.Driver == "sqlite" && s.PostgresDSN.IsSet():
		ck.errorf("storage.postgres_dsn", "only used with driver postgres; remove it or set driver: postgres")
	}
}

func (c *Config) checkOIDC(ck *checker) {
	o := c.OIDC
	if o.Issuer == "" {
		ck.errorf("oidc.issuer", "required (your OpenID Connect provider's issuer URL, e.g. https://login.example.com)")
	} else {
		checkURL(ck, "oidc.issuer", o.Issuer, true)
	}
	if o.ClientID == "" {
		ck.errorf("oidc.client_id", "required (jitproxy's client ID at the provider)")
	}
	if !slices.Contains(o.Scopes, "openid") {
		ck.errorf("oidc.scopes", "must include openid")
	}
	for _, cl := range []struct{ path, v string }{
		{"oidc.claims.email", o.Claims.Email}, {"oidc.claims.name", o.Claims.Name}, {"oidc.claims.groups", o.Claims.Groups},
	} {
		if cl.v == "" {
			ck.errorf(cl.path, "required (the ID token claim's name)")
		}
	}
	checkPositive(ck, "oidc.session_ttl", o.SessionTTL)
}

func (c *Config) checkDevIdP(ck *checker) {
	seen := make(map[string]string)
	for i, u := range c.DevIdP.Users {
		p := index("dev_idp.users", i)
		switch first, dup := seen[u.Username]; {
		case u.Username == "":
			ck.errorf(p+".username", "required")
		case dup:
			ck.errorf(p+".username", "duplicate username %q (also at %s)", u.Username, first)
		default:
			seen[u.Username] = p
		}
		if !u.Password.IsSet() {
			ck.errorf(p+".password", "required (what the dev login form takes)")
		}
		checkEmail(ck, p+".email", u.Email, true)
		checkNames(ck, p+".groups", u.Groups)
	}
}

func (c *Config) checkSSH(ck *checker) {
	s := c.SSH
	checkPositive(ck, "ssh.user_cert_ttl", s.UserCertTTL)
	for i, k := range s.TrustedUserCAKeys {
		checkPublicKey(ck, index("ssh.trusted_user_ca_keys", i), k)
	}
	for i, d := range s.WarnBefore {
		checkPositive(ck, index("ssh.warn_before", i), d)
	}
	if s.MaxSessionsPerPerson < 0 {
		ck.errorf("ssh.max_sessions_per_person", "must be 0 (no limit) or more, not %d", s.MaxSessionsPerPerson)
	}
	checkPositive(ck, "ssh.handshake_timeout", s.HandshakeTimeout)
}

func (c *Config) checkPostgres(ck *checker) {
	p := c.Postgres
	checkPair(ck, "postgres", "tls_cert_file", p.TLSCertFile, "tls_key_file", p.TLSKeyFile)
	checkPositive(ck, "postgres.token_ttl", p.TokenTTL)
	checkPositive(ck, "postgres.handshake_timeout", p.HandshakeTimeout)
}

func (c *Config) checkNotifications(ck *checker) {
	for i, w := range c.Notifications.Webhooks {
		p := index("notifications.webhooks", i)
		if w.URL == "" {
			ck.errorf(p+".url", "required (the http or https URL to POST events to)")
		} else {
			checkURL(ck, p+".url", w.URL, false)
		}
		oneOf(ck, p+".format", w.Format, "json", "slack")
		for j, e := range w.Events {
			oneOf(ck, index(p+".events", j), e, WebhookEvents()...)
		}
		checkPositive(ck, p+".timeout", w.Timeout)
		checkPositive(ck, p+".expiring_before", w.ExpiringBefore)
	}
}

// checkListen checks a host:port to listen on; port 0 picks a free port.
func checkListen(ck *checker, path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		ck.errorf(path, "bad address %q: want host:port, e.g. 127.0.0.1:8080 or :8080", addr)
	}
}

// checkDial checks a host:port to connect to.
func checkDial(ck *checker, path, addr, example string) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 || host == "" {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		ck.errorf(path, "bad address %q: want host:port, e.g. %s", addr, example)
	}
}

// sameListener reports whether two listen addresses would take the same
// port: same port, and the same host or either on every interface.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func splits(hostport string) bool {
	_, _, err := net.SplitHostPort(hostport)
	return err == nil
}

func isLoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	return err == nil && isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkURL checks an absolute http(s) URL. With httpsOnly, plain http is
// allowed only on a loopback host: tokens and codes cross it.
func checkURL(ck *checker, path, raw string, httpsOnly bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ck.errorf(path, "bad URL %q: want an absolute http or https URL", raw)
		return
	}
	if httpsOnly && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		ck.errorf(path, "%q must use https: plain http is only allowed on a loopback address", raw)
	}
}

func checkPositive(ck *checker, path string, d Duration) {
	if d <= 0 {
		ck.errorf(path, "required (a duration such as 30m, 2h or 1d)")
	}
}

func oneOf(ck *checker, path, v string, allowed ...string) {
	if slices.Contains(allowed, v) {
		return
	}
	if v == "" {
		ck.errorf(path, "required (one of %s)", orList(allowed))
		return
	}
	ck.errorf(path, "unknown value %q: use %s", v, orList(allowed))
}

// checkPair checks two fields that go together, both or neither.
func checkPair(ck *checker, path, aName, a, bName, b string) {
	switch {
	case a != "" && b == "":
		ck.errorf(join(path, bName), "required with %s", aName)
	case a == "" && b != "":
		ck.errorf(join(path, aName), "required with %s", bName)
	}
}

// checkNames checks a list of names (groups, logins, roles) has no empty
// entry.
func checkNames(ck *checker, path string, names []string) {
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			ck.errorf(index(path, i), "empty name")
		}
	}
}

func checkEmail(ck *checker, path, email string, required bool) {
	switch {
	case email == "" && required:
		ck.errorf(path, "required")
	case email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, " \t")):
		ck.errorf(path, "bad email %q", email)
	}
}

func orList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
