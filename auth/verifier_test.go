package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/jitproxy/jitproxy/auth/devidp"
	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

// idpToken gets a real ID token from a dev IdP: the code flow with PKCE and
// nonce for a public client registered with a loopback redirect URI.
func idpToken(t *testing.T, issuer, clientID, nonce string) string {
	t.Helper()
	ctx := testContext(t)
	oc := &oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/oauth/token"},
		RedirectURL: deadCLI,
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
	}
	verifier := oauth2.GenerateVerifier()
	page, err := signInWithBrowser(ctx, browser.New(stopAtDeadCLI), oc.AuthCodeURL("s", oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)),
		map[string]string{"username": "alice", "password": "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(page.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code from %s: status %d, Location %q", issuer, page.Status, page.Header.Get("Location"))
	}
	tok, err := oc.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange at %s: %v", issuer, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	return raw
}

// startOtherIdP serves a second, independent dev IdP (its own issuer and
// key) that also knows a public client "jitproxy".
func startOtherIdP(t *testing.T, started bool) (issuer string, srv *httptest.Server) {
	t.Helper()
	srv = httptest.NewUnstartedServer(nil)
	issuer = "http://" + srv.Listener.Addr().String() + "/dev-idp"
	idp, err := devidp.New(devidp.Config{
		Issuer:  issuer,
		Users:   []devidp.User{{Username: "alice", Password: "alice-pw", Email: "alice@example.com"}},
		Clients: []devidp.Client{{ID: testClientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		Logger:  zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	if started {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return issuer, srv
}

// mint signs claims as a JWT with key under key ID kid.
func mint(t *testing.T, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerifierRejections(t *testing.T) {
	env := newEnv(t)
	otherIssuer, _ := startOtherIdP(t, true)
	// The dev IdP, like any OP, only ever signs well-formed tokens for its own
	// issuer, for the client that asked, unexpired. To show that each check
	// of the verifier works on its own, the test signs tokens with exactly one
	// thing wrong: with the IdP's own key (the verifier trusts it, so only the
	// claim under test can make it fail), or, for the signature check, with a
	// second key the IdP never published (under the IdP's key ID). Real
	// tokens from a second dev IdP instance and from another client of the
	// same IdP cover the issuer and audience checks end to end.
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	base := map[string]any{
		"iss": env.issuer, "aud": testClientID, "sub": "alice", "nonce": "n-1",
		"email": "alice@example.com", "email_verified": true, "name": "Alice", "groups": []string{"dev"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	with := func(k string, v any) map[string]any {
		c := maps.Clone(base)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	good := func(c map[string]any) string { return mint(t, env.idpKey, env.idp.KeyID(), c) }
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		strings.Split(good(base), ".")[1] + "."

	tests := []struct {
		name    string
		token   string
		nonce   string
		later   time.Duration // how far the verifier's clock is ahead
		want    error
		wantMsg string
	}{
		{name: "minted with the IdP's key", token: good(base), nonce: "n-1"},
		{name: "real token for another client of the same IdP", token: idpToken(t, env.issuer, "other-app", "n-1"), nonce: "n-1", want: ErrWrongAudience, wantMsg: `want "jitproxy"`},
		{name: "another issuer", token: good(with("iss", "https://evil.example")), nonce: "n-1", want: ErrWrongIssuer, wantMsg: `"https://evil.example"`},
		{name: "real token from a second dev IdP", token: idpToken(t, otherIssuer, testClientID, "n-1"), nonce: "n-1", want: ErrWrongIssuer, wantMsg: otherIssuer},
		{name: "another audience", token: good(with("aud", "someone-else")), nonce: "n-1", want: ErrWrongAudience, wantMsg: "someone-else"},
		{name: "audience list without us", token: good(with("aud", []string{"a", "b"})), nonce: "n-1", want: ErrWrongAudience},
		{name: "expired", token: good(with("exp", now.Add(-time.Minute).Unix())), nonce: "n-1", want: ErrTokenExpired, wantMsg: "expired at"},
		{name: "expired by the verifier's clock", token: good(base), nonce: "n-1", later: 2 * time.Hour, want: ErrTokenExpired},
		{name: "signed with an unpublished key", token: mint(t, forger, env.idp.KeyID(), base), nonce: "n-1", want: ErrBadSignature, wantMsg: "signature"},
		{name: "unsigned", token: unsigned, nonce: "n-1", want: ErrBadSignature},
		{name: "wrong nonce", token: good(base), nonce: "n-2", want: ErrNonceMismatch, wantMsg: "nonce"},
		{name: "nonce where none is expected", token: good(base), nonce: "", want: ErrNonceMismatch},
		{name: "no email", token: good(with("email", nil)), nonce: "n-1", want: ErrNoEmail, wantMsg: `claim "email"`},
		{name: "empty email", token: good(with("email", " ")), nonce: "n-1", want: ErrNoEmail},
		{name: "email not verified", token: good(with("email_verified", false)), nonce: "n-1", want: ErrEmailNotVerified},
		{name: "groups not a list", token: good(with("groups", 42)), nonce: "n-1", want: ErrMalformedToken, wantMsg: "groups"},
		{name: "garbage", token: "not.a.jwt", nonce: "n-1", want: ErrMalformedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{
				Issuer:   env.issuer,
				ClientID: testClientID,
				Now:      func() time.Time { return time.Now().Add(tt.later) },
			})
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(testContext(t), tt.token, tt.nonce)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%v does not wrap ErrInvalidToken", err)
			}
			if !strings.Contains(errString(err), tt.wantMsg) {
				t.Errorf("message %q does not mention %q", err, tt.wantMsg)
			}
			if err == nil && (id.Email != "alice@example.com" || id.Subject != "alice" || id.Issuer != env.issuer) {
				t.Errorf("identity: got %+v; want alice@example.com, subject alice, issuer %s", id, env.issuer)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestVerifierDiscoveryIsLazyAndRetried(t *testing.T) {
	issuer, srv := startOtherIdP(t, false)
	v, err := NewVerifier(VerifierConfig{Issuer: issuer, ClientID: testClientID})
	if err != nil {
		t.Fatalf("NewVerifier with the IdP down: %v", err)
	}
	// The listener exists but nothing serves it yet, as while `jitproxy dev`
	// starts: the first use fails (after its deadline), later ones retry.
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, "x.y.z", ""); !errors.Is(err, ErrIdPUnavailable) {
		t.Fatalf("Verify with the IdP not listening: got %v; want ErrIdPUnavailable", err)
	}
	srv.Start()
	id, err := v.Verify(testContext(t), idpToken(t, issuer, testClientID, "n"), "n")
	if err != nil {
		t.Fatalf("Verify once the IdP is up: %v", err)
	}
	if id.Email != "alice@example.com" {
		t.Errorf("email: got %q; want alice@example.com", id.Email)
	}
}

func TestNewVerifierAndBrokerValidateConfig(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://proxy.example/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	noRedirect, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		new  func() error
		want error
	}{
		{"verifier ok", func() error {
			_, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", ClientID: "c"})
			return err
		}, nil},
		{"relative issuer", func() error { _, err := NewVerifier(VerifierConfig{Issuer: "/idp", ClientID: "c"}); return err }, ErrInvalidConfig},
		{"no client ID", func() error { _, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example"}); return err }, ErrInvalidConfig},
		{"relative redirect", func() error {
			_, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "/auth/callback"})
			return err
		}, ErrInvalidConfig},
		{"broker ok", func() error {
			b, err := NewBroker(BrokerConfig{Verifier: v, Sessions: NewMemorySessions()})
			closeBroker(b)
			return err
		}, nil},
		{"broker without verifier", func() error { _, err := NewBroker(BrokerConfig{Sessions: NewMemorySessions()}); return err }, ErrInvalidConfig},
		{"broker without sessions", func() error { _, err := NewBroker(BrokerConfig{Verifier: v}); return err }, ErrInvalidConfig},
		{"broker without redirect URL", func() error {
			_, err := NewBroker(BrokerConfig{Verifier: noRedirect, Sessions: NewMemorySessions()})
			return err
		}, ErrInvalidConfig},
		{"broker with negative lifetime", func() error {
			_, err := NewBroker(BrokerConfig{Verifier: v, Sessions: NewMemorySessions(), SessionLifetime: -time.Hour})
			return err
		}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.new(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.want)
		}
	}
}

func closeBroker(b *Broker) {
	if b != nil {
		b.Close()
	}
}
