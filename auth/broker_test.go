package auth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

// verifierOf returns a valid PKCE code_verifier made of seed.
func verifierOf(seed string) string { return strings.Repeat(seed, 43)[:43] }

func challengeOf(seed string) string { return oauth2.S256ChallengeFromVerifier(verifierOf(seed)) }

func TestTokenRedemption(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name      string
		verifiers []string // redeemed in order with the same code
		wantErrs  []error
	}{
		{"once", []string{verifierOf("a")}, []error{nil}},
		{"replayed code", []string{verifierOf("a"), verifierOf("a")}, []error{nil, ErrInvalidCode}},
		{"wrong verifier burns the code", []string{verifierOf("b"), verifierOf("a")}, []error{ErrCodeVerifierMismatch, ErrInvalidCode}},
		{"malformed verifier", []string{"short"}, []error{ErrCodeVerifierMismatch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := env.proxyCode(t, challengeOf("a"))
			for i, v := range tt.verifiers {
				tr, err := env.redeem(t, code, v)
				want := tt.wantErrs[i]
				if !errors.Is(err, want) || (want == nil) != (err == nil) {
					t.Fatalf("redemption %d: got %v; want %v", i+1, err, want)
				}
				var se *ServerError
				if err != nil && (!errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Message, "jitproxy login")) {
					t.Errorf("redemption %d: got %#v; want a 400 telling to run jitproxy login", i+1, err)
				}
				if err == nil && !strings.HasPrefix(tr.Token, SessionTokenPrefix) {
					t.Errorf("redemption %d: token %q lacks the %s prefix", i+1, tr.Token, SessionTokenPrefix)
				}
			}
		})
	}
	if _, err := env.redeem(t, "never-issued", verifierOf("a")); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("unknown code: got %v; want ErrInvalidCode", err)
	}
}

func TestLoginRequestValidation(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	good := url.Values{
		"redirect_uri":          {"http://127.0.0.1:5555/callback"},
		"state":                 {"s"},
		"code_challenge":        {challengeOf("a")},
		"code_challenge_method": {"S256"},
	}
	tests := []struct {
		name       string
		param      string
		value      string
		wantStatus int
		wantText   string
	}{
		{"IPv4 loopback", "redirect_uri", "http://127.0.0.1:5555/callback", http.StatusFound, ""},
		{"IPv6 loopback", "redirect_uri", "http://[::1]:5555/callback", http.StatusFound, ""},
		{"another host", "redirect_uri", "http://evil.example:5555/callback", http.StatusBadRequest, "loopback"},
		{"localhost by name", "redirect_uri", "http://localhost:5555/callback", http.StatusBadRequest, "loopback"},
		{"other loopback address", "redirect_uri", "http://127.0.0.2:5555/callback", http.StatusBadRequest, "loopback"},
		{"https", "redirect_uri", "https://127.0.0.1:5555/callback", http.StatusBadRequest, "loopback"},
		{"no port", "redirect_uri", "http://127.0.0.1/callback", http.StatusBadRequest, "with a port"},
		{"user info", "redirect_uri", "http://evil.example@127.0.0.1:5555/callback", http.StatusBadRequest, "loopback"},
		{"missing", "redirect_uri", "", http.StatusBadRequest, "loopback"},
		{"plain PKCE", "code_challenge_method", "plain", http.StatusBadRequest, "S256"},
		{"short challenge", "code_challenge", "abc", http.StatusBadRequest, "code_challenge"},
		{"no state", "state", "", http.StatusBadRequest, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range good {
				q[k] = v
			}
			q.Set(tt.param, tt.value)
			br := browser.New(func(*url.URL) bool { return true }) // look at the first answer only
			page, err := br.Get(ctx, env.base+"/auth/login?"+q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if page.Status != tt.wantStatus || !strings.Contains(page.Body, tt.wantText) {
				t.Errorf("got %d %q\n%s\nwant %d mentioning %q", page.Status, page.Header.Get("Location"), page.Body, tt.wantStatus, tt.wantText)
			}
			loc := page.Header.Get("Location")
			if tt.wantStatus == http.StatusFound && !strings.HasPrefix(loc, env.issuer+"/authorize?") {
				t.Errorf("redirect: got %q; want the IdP's authorization endpoint", loc)
			}
			if tt.wantStatus != http.StatusFound && loc != "" {
				t.Errorf("refused login redirects to %q", loc)
			}
		})
	}
}

func TestLoginIsBoundToTheBrowserThatStartedIt(t *testing.T) {
	env := newEnv(t)
	ctx := testContext(t)
	loginURL := env.base + "/auth/login?" + url.Values{
		"redirect_uri": {deadCLI}, "state": {"s"}, "code_challenge": {challengeOf("a")}, "code_challenge_method": {"S256"},
	}.Encode()
	// A victim's browser is lured into finishing a login an attacker's
	// browser started: it has no binding cookie, so nothing reaches the CLI.
	attacker, victim := browser.New(stopAtDeadCLI), browser.New(stopAtDeadCLI)
	form, err := attacker.Get(ctx, loginURL)
	if err != nil {
		t.Fatal(err)
	}
	page, err := victim.Submit(ctx, form, map[string]string{"username": "bob", "password": "bob-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusBadRequest || page.Header.Get("Location") != "" || !strings.Contains(page.Body, "not started in this browser") {
		t.Errorf("got %d Location %q\n%s\nwant 400 saying the login was not started in this browser", page.Status, page.Header.Get("Location"), page.Body)
	}
}

func TestCallbackWithUnknownState(t *testing.T) {
	env := newEnv(t)
	page, err := browser.New(nil).Get(testContext(t), env.base+"/auth/callback?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusBadRequest || !strings.Contains(page.Body, "Run `jitproxy login` again") {
		t.Errorf("got %d\n%s\nwant 400 telling to run jitproxy login again", page.Status, page.Body)
	}
}
