package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

// browserOpener returns an OpenBrowser for LoginPKCE that launches a
// programmatic browser (in its own goroutine, as a real one runs on its own)
// which signs in with fields; its final page or error arrives on the channel.
func browserOpener(ctx context.Context, fields map[string]string) (func(string) error, <-chan browserResult) {
	results := make(chan browserResult, 1)
	open := func(loginURL string) error {
		go func() {
			page, err := signInWithBrowser(ctx, browser.New(nil), loginURL, fields)
			results <- browserResult{page, err}
		}()
		return nil
	}
	return open, results
}

type browserResult struct {
	page *browser.Page
	err  error
}

func TestLoginPKCEEndToEnd(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	open, browsed := browserOpener(ctx, map[string]string{"username": "alice", "password": "alice-pw"})
	cfg := env.loginConfig(&syncBuffer{})
	cfg.OpenBrowser = open

	tr, err := LoginPKCE(ctx, cfg)
	if err != nil {
		t.Fatalf("LoginPKCE: %v", err)
	}
	b := <-browsed
	if b.err != nil {
		t.Fatalf("browser: %v", b.err)
	}
	if b.page.URL.Hostname() != "127.0.0.1" || b.page.URL.Path != loopbackPath || !strings.Contains(b.page.Body, "You can close this tab") {
		t.Errorf("browser ended on %s:\n%s\nwant the CLI's loopback page saying it can be closed", b.page.URL, b.page.Body)
	}
	if !strings.HasPrefix(tr.Token, SessionTokenPrefix) || len(tr.Token) != len(SessionTokenPrefix)+43 {
		t.Errorf("token %q: want %s followed by 43 base64url characters", tr.Token, SessionTokenPrefix)
	}
	if d := time.Until(tr.ExpiresAt); d < 11*time.Hour || d > 13*time.Hour {
		t.Errorf("expires_at in %s; want about 12h", d)
	}
	id, err := env.authenticate(t, tr.Token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	want := Identity{Subject: "alice", Issuer: env.issuer, Email: "alice@example.com", Name: "Alice Liddell", Groups: []string{"dev", "sre"}}
	if fmt.Sprint(id) != fmt.Sprint(want) || fmt.Sprint(tr.Identity) != fmt.Sprint(want) {
		t.Errorf("identity: got %+v (token response %+v); want %+v", id, tr.Identity, want)
	}
	if saw := env.onLoginSaw(); len(saw) != 1 || saw[0].Email != "alice@example.com" {
		t.Errorf("OnLogin saw %+v; want one login by alice@example.com", saw)
	}
	if _, ok := env.sessions.sessions[hashSessionToken(tr.Token)]; !ok {
		t.Error("the session store has no entry under the token's SHA-256")
	}
	for _, secret := range []string{tr.Token, testClientSecret, "alice-pw"} {
		if strings.Contains(env.logs.String(), secret) {
			t.Errorf("a log line contains a secret (%.8s…)", secret)
		}
	}
}

func TestLoginPKCEPrintsTheURLWithoutABrowser(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	out := &syncBuffer{}
	cfg := env.loginConfig(out)
	done := make(chan error, 1)
	go func() {
		_, err := LoginPKCE(ctx, cfg)
		done <- err
	}()
	// The person copies the one URL line into a browser.
	var loginURL string
	urlLine := regexp.MustCompile(`(?m)^(http://\S+/auth/login\?\S+)$`)
	for deadline := time.Now().Add(10 * time.Second); loginURL == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := urlLine.FindStringSubmatch(out.String()); m != nil {
			loginURL = m[1]
		}
	}
	if loginURL == "" {
		t.Fatalf("no login URL alone on a line in the output:\n%s", out)
	}
	if _, err := signInWithBrowser(ctx, browser.New(nil), loginURL, map[string]string{"username": "bob", "password": "bob-pw"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("LoginPKCE: %v", err)
	}
}

func TestLoginPKCEReportsIdPErrors(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	open, browsed := browserOpener(ctx, map[string]string{"action": "cancel"})
	cfg := env.loginConfig(nil)
	cfg.OpenBrowser = open

	_, err := LoginPKCE(ctx, cfg)
	if !errors.Is(err, ErrLoginFailed) || !strings.Contains(err.Error(), "access_denied") || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("LoginPKCE after cancel: got %v; want ErrLoginFailed naming access_denied and the cancel", err)
	}
	b := <-browsed
	if b.err != nil || !strings.Contains(b.page.Body, "Login failed") || !strings.Contains(b.page.Body, "cancelled") {
		t.Errorf("browser page: got %v\n%v; want a plain page saying the login failed", b.err, b.page)
	}
	if len(env.onLoginSaw()) != 0 {
		t.Error("OnLogin was called for a cancelled login")
	}
}

func TestLoginPKCETimesOut(t *testing.T) {
	env := newEnv(t)
	cfg := env.loginConfig(nil)
	cfg.Timeout = 200 * time.Millisecond
	cfg.OpenBrowser = func(string) error { return nil } // the person never signs in
	_, err := LoginPKCE(testContext(t), cfg)
	if !errors.Is(err, ErrLoginTimeout) {
		t.Errorf("got %v; want ErrLoginTimeout", err)
	}
}

// deviceInstructions waits for LoginDevice to print where to go and which code to enter.
func deviceInstructions(t *testing.T, out *syncBuffer) (verificationURI, userCode string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(http://\S+)\nand enter the code: (\S+)$`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], m[2]
		}
	}
	t.Fatalf("no verification URI and user code in the output:\n%s", out)
	return "", ""
}

func TestLoginDeviceEndToEnd(t *testing.T) {
	tests := []struct {
		name      string
		action    string // device page button; "" means sign in and allow
		wantPage  string
		wantErr   error
		wantEmail string
	}{
		{name: "allow", wantPage: "Signed in as alice", wantEmail: "alice@example.com"},
		{name: "deny", action: "deny", wantPage: "not signed in", wantErr: ErrDeviceDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := testContext(t)
			out := &syncBuffer{}
			type result struct {
				tr  TokenResponse
				err error
			}
			done := make(chan result, 1)
			go func() {
				tr, err := LoginDevice(ctx, env.loginConfig(out))
				done <- result{tr, err}
			}()
			verificationURI, userCode := deviceInstructions(t, out)
			if !strings.HasPrefix(verificationURI, env.issuer) {
				t.Errorf("verification URI %s is not at the IdP %s", verificationURI, env.issuer)
			}
			// Someone on another machine opens the URI and types the code.
			br := browser.New(nil)
			form, err := br.Get(ctx, verificationURI)
			if err != nil {
				t.Fatal(err)
			}
			page, err := br.Submit(ctx, form, map[string]string{"user_code": userCode, "username": "alice", "password": "alice-pw", "action": tt.action})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(page.Body, tt.wantPage) {
				t.Errorf("device page: got\n%s\nwant it to say %q", page.Body, tt.wantPage)
			}
			res := <-done
			if !errors.Is(res.err, tt.wantErr) || (tt.wantErr == nil) != (res.err == nil) {
				t.Fatalf("LoginDevice: got %v; want %v", res.err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			id, err := env.authenticate(t, res.tr.Token)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.Email != tt.wantEmail || strings.Join(id.Groups, ",") != "dev,sre" {
				t.Errorf("identity: got %+v; want %s in dev,sre", id, tt.wantEmail)
			}
		})
	}
}

func TestDevicePolling(t *testing.T) {
	env := newEnv(t)
	cfg := env.loginConfig(nil)
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	var start DeviceStart
	if err := postJSON(ctx, cfg, "/auth/device", struct{}{}, &start); err != nil {
		t.Fatalf("start: %v", err)
	}
	poll := func(handle string) (string, error) {
		var p devicePollResponse
		err := postJSON(ctx, cfg, "/auth/device/token", devicePollRequest{Handle: handle}, &p)
		return p.Status, err
	}
	tests := []struct {
		name       string
		handle     string
		wantStatus string
		wantErr    error
	}{
		{"first poll", start.Handle, deviceStatusPending, nil},
		{"poll again at once", start.Handle, "", errSlowDown},
		{"unknown handle", "no-such-handle", "", ErrDeviceExpired},
		{"empty handle", "", "", ErrDeviceExpired},
	}
	for _, tt := range tests {
		status, err := poll(tt.handle)
		if status != tt.wantStatus || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: got %q, %v; want %q, %v", tt.name, status, err, tt.wantStatus, tt.wantErr)
		}
	}

	// Someone approves another device login; polls at its interval then get
	// the token, once.
	var approved DeviceStart
	if err := postJSON(ctx, cfg, "/auth/device", struct{}{}, &approved); err != nil {
		t.Fatalf("start: %v", err)
	}
	br := browser.New(nil)
	form, err := br.Get(ctx, approved.VerificationURIComplete)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := br.Submit(ctx, form, map[string]string{"username": "bob", "password": "bob-pw"}); err != nil {
		t.Fatal(err)
	}
	status := deviceStatusPending
	for deadline := time.Now().Add(15 * time.Second); status == deviceStatusPending && time.Now().Before(deadline); {
		time.Sleep(time.Duration(approved.Interval)*time.Second + 100*time.Millisecond)
		if status, err = poll(approved.Handle); err != nil {
			t.Fatalf("poll after approval: %v", err)
		}
	}
	if status != deviceStatusComplete {
		t.Fatalf("status after approval: got %q; want %q", status, deviceStatusComplete)
	}
	if _, err := poll(approved.Handle); !errors.Is(err, ErrDeviceExpired) {
		t.Errorf("poll after the token was handed out: got %v; want ErrDeviceExpired", err)
	}

	// A device login left alone expires: its handle is then unknown.
	var abandoned DeviceStart
	if err := postJSON(ctx, cfg, "/auth/device", struct{}{}, &abandoned); err != nil {
		t.Fatalf("start: %v", err)
	}
	env.clock.Advance(time.Hour)
	if _, err := poll(abandoned.Handle); !errors.Is(err, ErrDeviceExpired) {
		t.Errorf("poll after expiry: got %v; want ErrDeviceExpired", err)
	}
}

func TestLogout(t *testing.T) {
	env := newEnv(t)
	tr, err := env.redeem(t, env.proxyCode(t, challengeOf("v")), verifierOf("v"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.loginConfig(nil)
	if _, err := env.authenticate(t, tr.Token); err != nil {
		t.Fatalf("Authenticate before logout: %v", err)
	}
	if err := Logout(testContext(t), cfg, tr.Token); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := env.authenticate(t, tr.Token); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Authenticate after logout: got %v; want ErrSessionRevoked", err)
	}
	if err := Logout(testContext(t), cfg, tr.Token); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("second Logout: got %v; want ErrSessionRevoked", err)
	}
}

func TestAuthenticate(t *testing.T) {
	env := newEnv(t)
	tr, err := env.redeem(t, env.proxyCode(t, challengeOf("v")), verifierOf("v"))
	if err != nil {
		t.Fatal(err)
	}
	forged := SessionTokenPrefix + strings.Repeat("A", 43)
	tests := []struct {
		name    string
		header  string
		advance time.Duration
		wantErr error
	}{
		{"valid", "Bearer " + tr.Token, 0, nil},
		{"lower-case scheme", "bearer " + tr.Token, 0, nil},
		{"no header", "", 0, ErrNotLoggedIn},
		{"basic auth", "Basic YWxpY2U6cHc=", 0, ErrNotLoggedIn},
		{"not a jitproxy token", "Bearer eyJhbGciOi.x.y", 0, ErrSessionRevoked},
		{"unknown token", "Bearer " + forged, 0, ErrSessionRevoked},
		{"still valid after 11h", "Bearer " + tr.Token, 11 * time.Hour, nil},
		{"expired after 12h", "Bearer " + tr.Token, time.Hour, ErrSessionExpired},
		{"expired session is dropped", "Bearer " + tr.Token, 0, ErrSessionRevoked},
	}
	for _, tt := range tests {
		env.clock.Advance(tt.advance)
		r := httptest.NewRequest(http.MethodGet, env.base+"/api/whoami", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		id, err := env.broker.Authenticate(r)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.wantErr)
		}
		if err == nil && id.Email != "alice@example.com" {
			t.Errorf("%s: got identity %+v; want alice@example.com", tt.name, id)
		}
		if err != nil && !strings.Contains(err.Error(), "jitproxy login") && !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("%s: message %q does not say to run jitproxy login", tt.name, err)
		}
	}
}

func TestTooManyPendingLogins(t *testing.T) {
	env := newEnv(t, func(c *BrokerConfig) { c.MaxPending = 1 })
	ctx := testContext(t)
	start := func() *browser.Page {
		br := browser.New(func(u *url.URL) bool { return strings.HasPrefix(u.Path, "/dev-idp/") })
		page, err := br.Get(ctx, env.base+"/auth/login?"+url.Values{
			"redirect_uri": {deadCLI}, "state": {"s"}, "code_challenge": {challengeOf("v")}, "code_challenge_method": {"S256"},
		}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	if p := start(); p.Status != 302 {
		t.Fatalf("first login: got status %d; want 302 to the IdP", p.Status)
	}
	if p := start(); p.Status != 503 || !strings.Contains(p.Body, "too many logins in progress") {
		t.Errorf("second login: got %d\n%s\nwant 503 saying too many logins", p.Status, p.Body)
	}
	env.clock.Advance(11 * time.Minute) // the first login times out and is dropped
	if p := start(); p.Status != 302 {
		t.Errorf("login after the first expired: got status %d; want 302", p.Status)
	}
}

func TestLoginPKCEIgnoresRedirectsWithAnotherState(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	// Something on this machine hits the CLI's listener first with a code
	// of its own: it must be turned away, and the real login still finish.
	forged := make(chan browserResult, 1)
	open, browsed := browserOpener(ctx, map[string]string{"username": "alice", "password": "alice-pw"})
	cfg := env.loginConfig(nil)
	cfg.OpenBrowser = func(loginURL string) error {
		u, err := url.Parse(loginURL)
		if err != nil {
			return err
		}
		cli, _ := url.Parse(u.Query().Get("redirect_uri"))
		cli.RawQuery = url.Values{"code": {"attacker-code"}, "state": {"guessed"}}.Encode()
		page, err := browser.New(nil).Get(ctx, cli.String())
		forged <- browserResult{page, err}
		return open(loginURL)
	}
	tr, err := LoginPKCE(ctx, cfg)
	if err != nil {
		t.Fatalf("LoginPKCE: %v", err)
	}
	if f := <-forged; f.err != nil || f.page.Status != http.StatusBadRequest || !strings.Contains(f.page.Body, "does not belong") {
		t.Errorf("forged redirect: got %v %v; want 400 saying it does not belong to this login", f.err, f.page)
	}
	if b := <-browsed; b.err != nil {
		t.Fatal(b.err)
	}
	if tr.Identity.Email != "alice@example.com" {
		t.Errorf("identity: got %+v; want alice@example.com", tr.Identity)
	}
}
