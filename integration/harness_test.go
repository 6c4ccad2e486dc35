// Package integration runs the jitproxy binary end to end: the server with
// its embedded dev OpenID Provider on free loopback ports, the client
// commands as separate processes with one JITPROXY_HOME per person, and a
// programmatic browser that signs in through the real login forms.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the jitproxy binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jitproxy-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jitproxy")
	build := exec.Command("go", "build", "-o", binary, "github.com/jitproxy/jitproxy/cmd/jitproxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building jitproxy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is one `jitproxy dev` process.
type server struct {
	t       *testing.T
	dir     string // holds the config
	data    string // the data directory, kept across restarts
	config  string
	url     string
	sshAddr string // the bastion, when started
	pgAddr  string // the PostgreSQL endpoint, when started
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan error
	stopped bool
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig is the dev config on a free port, with rules the tests use:
// one that needs bob's approval and one that approves itself.
const testConfig = `
server:
  api_listen: 127.0.0.1:%[1]d
  public_url: http://127.0.0.1:%[1]d
  ssh_listen: "%[2]s"
  postgres_listen: "%[3]s"
  shutdown_timeout: 5s
log: {level: debug, format: json}
storage: {driver: sqlite, data_dir: ./data}
oidc:
  issuer: http://127.0.0.1:%[1]d/dev-idp
  client_id: jitproxy-dev
  scopes: [openid, email, profile, groups]
  session_ttl: 1h
dev_idp:
  users:
    - {username: alice, password: alice-pw, email: alice@example.com, name: Alice, groups: [eng]}
    - {username: bob, password: bob-pw, email: bob@example.com, name: Bob, groups: [sre-leads]}
    - {username: carol, password: carol-pw, email: carol@example.com, name: Carol, groups: [security]}
targets:
  ssh:
    - {name: web-1, address: "127.0.0.1:22", logins: [ubuntu], host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}
%[4]s
  postgres:
%[5]s
    - name: app-db
      address: "127.0.0.1:5432"
      databases: [app]
      tls: {mode: disable}
      roles: [{name: app_ro, user: app_ro, password: secret-ro}]
contract:
  admin_groups: [sre-leads]
  auditor_groups: [security]
  rules:
    - name: eng-web
      who: {groups: [eng]}
      targets: [web-1]
      logins: [ubuntu]
      max_duration: 4h
      approvals: {count: 1, groups: [sre-leads]}
      require_reason: true
    - name: eng-db-ro
      who: {groups: [eng]}
      targets: [app-db]
      roles: [app_ro]
      databases: [app]
      max_duration: 1h
      approvals: {count: 0}
      require_reason: false
%[6]s`

// demoSSH and demoDB are the dev-mode targets that `jitproxy dev` starts
// itself: a private sshd and a private PostgreSQL.
const (
	demoSSH = `    - {name: demo-ssh, dev_sshd: true}`
	demoDB  = `    - name: demo-db
      dev_postgres: true
      databases: [app]
      tls: {mode: disable}
      roles:
        - {name: app_ro, password: app-ro-pw}
        - {name: app_rw, password: app-rw-pw}`
)

// demoSSHRule and demoDBRule let eng request the demo targets, with bob's
// approval.
const (
	demoSSHRule = `    - name: eng-demo-ssh
      who: {groups: [eng]}
      targets: [demo-ssh]
      logins: ["*"]
      port_forwarding: true
      max_duration: 4h
      approvals: {count: 1, groups: [sre-leads]}
      require_reason: false
`
	demoDBRule = `    - name: eng-demo-db
      who: {groups: [eng]}
      targets: [demo-db]
      roles: [app_rw, app_ro]
      databases: [app]
      max_duration: 4h
      approvals: {count: 1, groups: [sre-leads]}
      require_reason: false
`
)

// serverOptions chooses what a test server runs besides the API.
type serverOptions struct {
	ssh, postgres bool
	extra         string // more YAML sections
}

// startServer writes a config on a free port (plus extra YAML sections) and
// starts `jitproxy dev` on it with the API only; it is stopped at the end of
// the test.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerWith(t, serverOptions{extra: strings.Join(extra, "\n")})
}

// startServerWith starts `jitproxy dev` with the SSH bastion and its demo
// sshd, and the PostgreSQL endpoint and its demo server, as asked.
func startServerWith(t *testing.T, o serverOptions) *server {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	var sshListen, pgListen, sshTargets, pgTargets, rule string
	if o.ssh {
		sshListen, sshTargets, rule = fmt.Sprintf("127.0.0.1:%d", freePort(t)), demoSSH, demoSSHRule
	}
	if o.postgres {
		pgListen, pgTargets, rule = fmt.Sprintf("127.0.0.1:%d", freePort(t)), demoDB, rule+demoDBRule
	}
	s := &server{t: t, dir: dir, data: filepath.Join(dir, "data"), config: filepath.Join(dir, "jitproxy.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port), sshAddr: sshListen, pgAddr: pgListen}
	if err := os.WriteFile(s.config, fmt.Appendf(nil, testConfig+o.extra, port, sshListen, pgListen, sshTargets, pgTargets, rule), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(func() {
		if !s.stopped {
			s.stop()
		}
		if o.postgres && os.Geteuid() == 0 {
			// As root, jitproxy dev keeps the demo cluster outside the data
			// directory (see devPostgresDir in cmd/jitproxy).
			sum := sha256.Sum256([]byte(s.data))
			os.RemoveAll(filepath.Join("/var/lib/jitproxy", "demo-postgres-"+hex.EncodeToString(sum[:6])))
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs.String())
		}
	})
	return s
}

// start runs the server process and waits until it is ready.
func (s *server) start() {
	t := s.t
	t.Helper()
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(binary, "dev", "--config", s.config, "--data", s.data)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.stopped = false
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.exited:
			t.Fatalf("server exited before it was ready: %v\n%s", err, s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30s:\n%s", s.logs.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() error {
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-s.exited:
		return err
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		return errors.New("server did not stop within 20s of SIGTERM")
	}
}

// person is one user of the CLI, with their own JITPROXY_HOME.
type person struct {
	t        *testing.T
	s        *server
	name     string
	password string
	home     string
}

func (s *server) person(name string) *person {
	return &person{t: s.t, s: s, name: name, password: name + "-pw", home: filepath.Join(s.dir, "home-"+name)}
}

// result is one finished CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the CLI as this person and returns what it printed and its exit
// code.
func (p *person) run(args ...string) result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "JITPROXY_HOME="+p.home, "JITPROXY_PROXY="+p.s.url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("jitproxy %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs the CLI and fails the test unless it exits 0.
func (p *person) ok(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	if r.code != 0 {
		p.t.Fatalf("%s: jitproxy %s: exit %d\nstdout: %s\nstderr: %s", p.name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs the CLI, expects a non-zero exit, and returns stderr.
func (p *person) fails(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	if r.code == 0 {
		p.t.Fatalf("%s: jitproxy %s: exit 0; want a failure\nstdout: %s", p.name, strings.Join(args, " "), r.stdout)
	}
	return r.stderr
}

// login runs `jitproxy login` with extra flags and drives the sign-in
// through the programmatic browser: sign is called with the lines the CLI
// printed on stderr until then and must complete the sign-in.
func (p *person) login(flags []string, sign func(t *testing.T, printed string)) string {
	p.t.Helper()
	t := p.t
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"login"}, flags...)...)
	cmd.Env = append(os.Environ(), "JITPROXY_HOME="+p.home, "JITPROXY_PROXY="+p.s.url)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Waiting for the login") {
			break
		}
	}
	sign(t, printed.String())
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("jitproxy login: %v\nprinted: %s", err, printed.String())
	}
	return out.String()
}

// loginBrowser logs in with --no-browser, opening the printed URL in the
// programmatic browser.
func (p *person) loginBrowser() string {
	p.t.Helper()
	return p.login([]string{"--no-browser"}, func(t *testing.T, printed string) {
		u := regexp.MustCompile(`(?m)^(http://\S+/auth/login\?\S+)$`).FindStringSubmatch(printed)
		if u == nil {
			t.Fatalf("login printed no URL alone on a line:\n%s", printed)
		}
		b := newBrowser(t)
		page := b.get(u[1])
		page = b.submit(page, map[string]string{"username": p.name, "password": p.password, "action": "signin"})
		if !strings.Contains(page.body, "Login received") && !strings.Contains(strings.ToLower(page.body), "close this") {
			t.Fatalf("after signing in the browser shows:\n%s", page.body)
		}
	})
}

// browser is a programmatic browser: a cookie jar, redirects followed, and
// HTML forms filled in and submitted.
type browser struct {
	t      *testing.T
	client *http.Client
}

type page struct {
	url  *url.URL
	body string
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	return b.read(resp)
}

func (b *browser) read(resp *http.Response) page {
	b.t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{url: resp.Request.URL, body: string(body)}
}

var (
	formRe  = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"`)
	inputRe = regexp.MustCompile(`<input[^>]*\bname="([^"]+)"[^>]*>`)
	valueRe = regexp.MustCompile(`\bvalue="([^"]*)"`)
)

// submit fills the page's form with fields (keeping its hidden values) and
// posts it.
func (b *browser) submit(p page, fields map[string]string) page {
	b.t.Helper()
	m := formRe.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no form on %s:\n%s", p.url, p.body)
	}
	action, err := p.url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	form := url.Values{}
	for _, in := range inputRe.FindAllStringSubmatch(p.body, -1) {
		if v := valueRe.FindStringSubmatch(in[0]); v != nil {
			form.Set(in[1], html.UnescapeString(v[1]))
		}
	}
	for k, v := range fields {
		form.Set(k, v)
	}
	resp, err := b.client.PostForm(action.String(), form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", action, err)
	}
	return b.read(resp)
}

// idOf returns the short amendment id at the start of a client's one-line
// answer ("7f3a9c01  requested  ...").
func idOf(t *testing.T, line string) string {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 2 || len(f[0]) != 8 {
		t.Fatalf("no amendment id in %q", line)
	}
	return f[0]
}
