package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/auth/devidp"
	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

const (
	testClientID     = "jitproxy"
	testClientSecret = "jitproxy-dev-secret"
)

// testEnv is jitproxy's auth stack for real, over HTTP on 127.0.0.1: the
// dev IdP at /dev-idp and the Broker at /auth/ in one server, as `jitproxy
// dev` wires them.
type testEnv struct {
	base     string // http://127.0.0.1:PORT
	issuer   string
	idp      *devidp.Provider
	idpKey   *ecdsa.PrivateKey // the IdP's signing key, to mint tokens in negative tests
	verifier *Verifier
	broker   *Broker
	sessions *MemorySessions
	clock    *testClock
	logs     *syncBuffer // everything the IdP and the broker logged

	mu     sync.Mutex // guards logins
	logins []Identity // what OnLogin saw
}

type envOption func(*BrokerConfig)

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	env := &testEnv{
		base:     base,
		issuer:   base + "/dev-idp",
		sessions: NewMemorySessions(),
		clock:    &testClock{},
		logs:     &syncBuffer{},
	}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), env.logs))
	var err error
	env.idpKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env.idp, err = devidp.New(devidp.Config{
		Issuer: env.issuer,
		Users: []devidp.User{
			{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Name: "Alice Liddell", Groups: []string{"dev", "sre"}},
			{Username: "bob", Password: "bob-pw", Email: "bob@example.com", Name: "Bob"},
		},
		Clients: []devidp.Client{
			{ID: testClientID, Secret: testClientSecret, RedirectURIs: []string{base + callbackPath}},
			{ID: "other-app", RedirectURIs: []string{"http://127.0.0.1/callback"}},
		},
		SigningKey:         env.idpKey,
		DevicePollInterval: time.Second,
		Logger:             log,
	})
	if err != nil {
		t.Fatalf("devidp.New: %v", err)
	}
	// The verifier and broker exist before the server listens, as in
	// `jitproxy dev`: discovery must wait for first use.
	env.verifier, err = NewVerifier(VerifierConfig{
		Issuer:       env.issuer,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  base + callbackPath,
		Logger:       log,
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	cfg := BrokerConfig{
		Verifier: env.verifier,
		Sessions: env.sessions,
		OnLogin: func(_ context.Context, id Identity) {
			env.mu.Lock()
			defer env.mu.Unlock()
			env.logins = append(env.logins, id)
		},
		Now:    env.clock.Now,
		Logger: log,
	}
	for _, o := range opts {
		o(&cfg)
	}
	env.broker, err = NewBroker(cfg)
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dev-idp/", env.idp)
	mux.Handle("/auth/", env.broker)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		env.broker.Close()
	})
	return env
}

func (e *testEnv) loginConfig(out io.Writer) LoginConfig {
	return LoginConfig{ProxyURL: e.base, Out: out, Timeout: 30 * time.Second}
}

func (e *testEnv) onLoginSaw() []Identity {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.logins)
}

// authenticate checks token the way every jitproxy API route will.
func (e *testEnv) authenticate(t *testing.T, token string) (Identity, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, e.base+"/api/whoami", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return e.broker.Authenticate(r)
}

// testClock is real time plus an offset a test can move forward.
type testClock struct {
	mu     sync.Mutex // guards offset
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// signInWithBrowser is a person at a browser: it opens loginURL, expects
// the IdP's sign-in form, submits the credentials (or presses action), and
// returns the page it ends on.
func signInWithBrowser(ctx context.Context, br *browser.Browser, loginURL string, fields map[string]string) (*browser.Page, error) {
	form, err := br.Get(ctx, loginURL)
	if err != nil {
		return nil, fmt.Errorf("open login URL: %w", err)
	}
	if names := br.Inputs(form); !slices.Contains(names, "username") || !slices.Contains(names, "password") {
		return nil, fmt.Errorf("login page %s: status %d, inputs %v; want a form with username and password", form.URL, form.Status, names)
	}
	return br.Submit(ctx, form, fields)
}

// deadCLI is a loopback redirect_uri nobody listens on: tests that play the
// CLI by hand stop the browser there and read the code from Location.
const deadCLI = "http://127.0.0.1:9/callback"

func stopAtDeadCLI(u *url.URL) bool { return u.Host == "127.0.0.1:9" }

// proxyCode plays the CLI by hand: it starts a login with challenge, signs
// in as alice, and returns the one-time code the broker sent to the CLI.
func (e *testEnv) proxyCode(t *testing.T, challenge string) string {
	t.Helper()
	ctx := testContext(t)
	loginURL := e.base + "/auth/login?" + url.Values{
		"redirect_uri":          {deadCLI},
		"state":                 {"cli-state"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}.Encode()
	page, err := signInWithBrowser(ctx, browser.New(stopAtDeadCLI), loginURL, map[string]string{"username": "alice", "password": "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(page.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), deadCLI) || loc.Query().Get("state") != "cli-state" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect to the CLI: got %q (status %d); want %s?code=…&state=cli-state", page.Header.Get("Location"), page.Status, deadCLI)
	}
	return loc.Query().Get("code")
}

// redeem posts a code and verifier to /auth/token, as LoginPKCE does.
func (e *testEnv) redeem(t *testing.T, code, verifier string) (TokenResponse, error) {
	t.Helper()
	cfg := e.loginConfig(nil)
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var tr TokenResponse
	err := postJSON(testContext(t), cfg, "/auth/token", tokenRequest{Code: code, CodeVerifier: verifier}, &tr)
	return tr, err
}
