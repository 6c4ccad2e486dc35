package devidp_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

// stopAtDeadRedirect makes the test browser stop at the client's redirect.
func stopAtDeadRedirect(u *url.URL) bool { return u.Host == "127.0.0.1:9" }

func publicClient(env *idpEnv) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    "cli",
		Endpoint:    oauth2.Endpoint{AuthURL: env.issuer + "/authorize", TokenURL: env.issuer + "/oauth/token"},
		RedirectURL: deadRedirect,
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
	}
}

// signIn opens authURL in br, submits the sign-in form with the given
// credentials, and returns the redirect to the client (nil if none).
func signIn(t *testing.T, ctx context.Context, br *browser.Browser, authURL, username, password string) (*browser.Page, *url.URL) {
	t.Helper()
	form, err := br.Get(ctx, authURL)
	if err != nil {
		t.Fatalf("open authorization URL: %v", err)
	}
	if form.Status != http.StatusOK || !slices.Contains(br.Inputs(form), "username") || !slices.Contains(br.Inputs(form), "password") {
		t.Fatalf("sign-in page: got status %d, inputs %v; want 200 with username and password\n%s", form.Status, br.Inputs(form), form.Body)
	}
	done, err := br.Submit(ctx, form, map[string]string{"username": username, "password": password})
	if err != nil {
		t.Fatalf("submit sign-in form: %v", err)
	}
	loc := done.Header.Get("Location")
	if loc == "" {
		return done, nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("redirect %q: %v", loc, err)
	}
	return done, u
}

func TestCodeFlowWithPKCEIssuesIDTokenWithClaims(t *testing.T) {
	env := startIdP(t, ecKey(t))
	ctx := testContext(t)
	oc := publicClient(env)
	provider, err := oidc.NewProvider(ctx, env.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	verifier := oauth2.GenerateVerifier()
	br := browser.New(stopAtDeadRedirect)
	_, redirect := signIn(t, ctx, br, oc.AuthCodeURL("st-1", oidc.Nonce("nonce-1"), oauth2.S256ChallengeOption(verifier)), "alice", "alice-pw")
	if redirect == nil || redirect.Query().Get("state") != "st-1" || redirect.Query().Get("code") == "" {
		t.Fatalf("redirect to client: got %v; want %s?code=…&state=st-1", redirect, deadRedirect)
	}
	code := redirect.Query().Get("code")

	if _, err := oc.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("exchange with the wrong code_verifier: got a token; want an error")
	}
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if _, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
		t.Error("second exchange of the same code: got a token; want an error")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "cli"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	var claims struct {
		Email    string   `json:"email"`
		Verified bool     `json:"email_verified"`
		Name     string   `json:"name"`
		Groups   []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"sub", idt.Subject, "alice"},
		{"nonce", idt.Nonce, "nonce-1"},
		{"email", claims.Email, "alice@example.com"},
		{"email_verified", claims.Verified, true},
		{"name", claims.Name, "Alice Liddell"},
		{"groups", strings.Join(claims.Groups, ","), "dev,sre"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("ID token %s: got %v; want %v", tt.name, tt.got, tt.want)
		}
	}

	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var infoClaims struct {
		Groups []string `json:"groups"`
	}
	info.Claims(&infoClaims)
	if info.Email != "alice@example.com" || strings.Join(infoClaims.Groups, ",") != "dev,sre" {
		t.Errorf("userinfo: got email %q groups %v; want alice@example.com [dev sre]", info.Email, infoClaims.Groups)
	}
}

func TestConfidentialClientNeedsItsSecret(t *testing.T) {
	env := startIdP(t, ecKey(t))
	ctx := testContext(t)
	tests := []struct {
		name    string
		secret  string
		wantErr bool
	}{
		{"wrong secret", "nope", true},
		{"right secret", "web-secret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oc := &oauth2.Config{
				ClientID:     "web",
				ClientSecret: tt.secret,
				Endpoint:     oauth2.Endpoint{AuthURL: env.issuer + "/authorize", TokenURL: env.issuer + "/oauth/token"},
				RedirectURL:  deadRedirect,
				Scopes:       []string{oidc.ScopeOpenID, "email"},
			}
			verifier := oauth2.GenerateVerifier()
			_, redirect := signIn(t, ctx, browser.New(stopAtDeadRedirect), oc.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "bob", "bob-pw")
			if redirect == nil {
				t.Fatal("no redirect to the client after sign-in")
			}
			_, err := oc.Exchange(ctx, redirect.Query().Get("code"), oauth2.VerifierOption(verifier))
			var re *oauth2.RetrieveError
			if (err != nil) != tt.wantErr || (err != nil && !(errors.As(err, &re) && re.ErrorCode == "invalid_client")) {
				t.Errorf("exchange: got %v; want error %v (invalid_client)", err, tt.wantErr)
			}
		})
	}
}

func TestWrongPasswordShowsTheFormAgain(t *testing.T) {
	env := startIdP(t, ecKey(t))
	ctx := testContext(t)
	oc := publicClient(env)
	br := browser.New(stopAtDeadRedirect)
	authURL := oc.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	tests := []struct {
		name, username, password string
	}{
		{"wrong password", "alice", "bob-pw"},
		{"unknown user", "mallory", "alice-pw"},
		{"empty password", "alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, redirect := signIn(t, ctx, br, authURL, tt.username, tt.password)
			if redirect != nil {
				t.Fatalf("got a redirect to %s; want the form again", redirect)
			}
			if page.Status != http.StatusUnauthorized {
				t.Errorf("status: got %d; want 401", page.Status)
			}
			if !strings.Contains(page.Body, "Wrong username or password") {
				t.Errorf("page does not say %q:\n%s", "Wrong username or password", page.Body)
			}
			if !slices.Contains(br.Inputs(page), "password") || !slices.Contains(br.Inputs(page), "authRequestID") {
				t.Errorf("page inputs: got %v; want the sign-in form", br.Inputs(page))
			}
		})
	}
	// The same browser can still sign in afterwards.
	if _, redirect := signIn(t, ctx, br, authURL, "alice", "alice-pw"); redirect == nil || redirect.Query().Get("code") == "" {
		t.Errorf("sign-in after failures: got redirect %v; want one with a code", redirect)
	}
}

func TestCancelSendsAccessDeniedToTheClient(t *testing.T) {
	env := startIdP(t, ecKey(t))
	ctx := testContext(t)
	br := browser.New(stopAtDeadRedirect)
	form, err := br.Get(ctx, publicClient(env).AuthCodeURL("st-9", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	done, err := br.Submit(ctx, form, map[string]string{"action": "cancel"})
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := url.Parse(done.Header.Get("Location"))
	if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-9" {
		t.Errorf("redirect after cancel: got %q; want error=access_denied&state=st-9", done.Header.Get("Location"))
	}
}
