package auth

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Timeouts of the CLI flows.
const (
	defaultLoginWait = 10 * time.Minute // LoginConfig.Timeout's default
	cliHTTPTimeout   = 30 * time.Second // each call to the jitproxy server
	loopbackShutdown = 5 * time.Second  // draining the loopback listener
	loopbackHeaders  = 10 * time.Second // reading a request's headers on the loopback listener
	loopbackPath     = "/callback"
)

// LoginConfig configures the CLI side of `jitproxy login`.
type LoginConfig struct {
	ProxyURL   string       // the jitproxy server, e.g. http://127.0.0.1:8080
	HTTPClient *http.Client // nil means a client with a 30s timeout
	// OpenBrowser opens url in the person's browser. It should return once
	// the browser is launched. nil means print the URL only (--no-browser).
	OpenBrowser func(url string) error
	Out         io.Writer     // where instructions go; nil means io.Discard
	Timeout     time.Duration // 0 means 10m: the whole login
}

func (c *LoginConfig) validate() error {
	u, err := url.Parse(c.ProxyURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("auth: login: %w: proxy URL %q must be an absolute http(s) URL", ErrInvalidConfig, c.ProxyURL)
	}
	c.ProxyURL = strings.TrimSuffix(c.ProxyURL, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: cliHTTPTimeout}
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Timeout == 0 {
		c.Timeout = defaultLoginWait
	}
	return nil
}

// LoginPKCE logs in through the browser: it listens on 127.0.0.1:0, sends
// the browser to the proxy's /auth/login with its own state and PKCE
// challenge, waits for the redirect back with a one-time code, checks the
// state, and redeems the code with its verifier at /auth/token.
func LoginPKCE(ctx context.Context, cfg LoginConfig) (TokenResponse, error) {
	if err := cfg.validate(); err != nil {
		return TokenResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return TokenResponse{}, fmt.Errorf("auth: login: listen on loopback: %w", err)
	}
	lb := &loopback{state: randomString(), result: make(chan loopbackResult, 1)}
	srv := &http.Server{Handler: lb, ReadHeaderTimeout: loopbackHeaders}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		srv.Serve(ln) // returns http.ErrServerClosed on Shutdown
	}()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), loopbackShutdown)
		defer scancel()
		srv.Shutdown(sctx)
		<-serveDone
	}()

	verifier := oauth2.GenerateVerifier()
	loginURL := cfg.ProxyURL + "/auth/login?" + url.Values{
		"redirect_uri":          {"http://" + ln.Addr().String() + loopbackPath},
		"state":                 {lb.state},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}.Encode()
	if cfg.OpenBrowser == nil {
		fmt.Fprintf(cfg.Out, "Open this URL in a browser to log in:\n%s\n", loginURL)
	} else if err := cfg.OpenBrowser(loginURL); err != nil {
		fmt.Fprintf(cfg.Out, "Could not open a browser (%v). Open this URL to log in:\n%s\n", err, loginURL)
	} else {
		fmt.Fprintf(cfg.Out, "Opened a browser to log in. If it did not open, visit:\n%s\n", loginURL)
	}
	fmt.Fprintln(cfg.Out, "Waiting for the login to finish...")

	var res loopbackResult
	select {
	case res = <-lb.result:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return TokenResponse{}, fmt.Errorf("auth: login: %w", ErrLoginTimeout)
		}
		return TokenResponse{}, fmt.Errorf("auth: login: %w", ctx.Err())
	}
	if res.err != nil {
		return TokenResponse{}, res.err
	}
	var tr TokenResponse
	if err := postJSON(ctx, cfg, "/auth/token", tokenRequest{Code: res.code, CodeVerifier: verifier}, &tr); err != nil {
		return TokenResponse{}, err
	}
	return tr, nil
}

// loopback is the CLI's redirect listener. Only a request carrying the
// expected state counts, and only the first one.
type loopback struct {
	state  string
	result chan loopbackResult // buffered 1

	once sync.Once // delivers one result
}

type loopbackResult struct {
	code string
	err  error
}

func (l *loopback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != loopbackPath {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(l.state)) != 1 {
		writePage(w, http.StatusBadRequest, "Login not recognised",
			"This response does not belong to the login jitproxy is waiting for. Close this tab.")
		return
	}
	var res loopbackResult
	switch {
	case q.Get("error") != "":
		msg := strings.TrimSpace(q.Get("error") + ": " + q.Get("error_description"))
		res.err = fmt.Errorf("auth: login: %w: %s", ErrLoginFailed, msg)
		writePage(w, http.StatusOK, "Login failed", msg+". You can close this tab; run `jitproxy login` to try again.")
	case q.Get("code") == "":
		res.err = fmt.Errorf("auth: login: %w: the redirect carried no code", ErrLoginFailed)
		writePage(w, http.StatusBadRequest, "Login failed", "The redirect carried no code. Run `jitproxy login` again.")
	default:
		res.code = q.Get("code")
		writePage(w, http.StatusOK, "Login received", "jitproxy received your login. You can close this tab and return to the terminal.")
	}
	l.once.Do(func() { l.result <- res })
}

// Logout revokes token at the proxy.
func Logout(ctx context.Context, cfg LoginConfig, token string) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.ProxyURL+"/auth/logout", nil)
	if err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return decodeAnswer(resp, &struct{}{})
}

// postJSON posts body as JSON to the proxy's path and decodes the answer into out.
func postJSON(ctx context.Context, cfg LoginConfig, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("auth: %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.ProxyURL+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("auth: %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("auth: %s: %w", path, err)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}
