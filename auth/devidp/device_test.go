package devidp_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/jitproxy/jitproxy/auth/internal/browser"
)

func TestDeviceGrant(t *testing.T) {
	tests := []struct {
		name       string
		fields     map[string]string // the device form as submitted; "" user_code means the real one
		wantStatus int
		wantPage   string
		wantToken  bool
		wantError  string // the OAuth error the device then gets
	}{
		{
			name:       "approve",
			fields:     map[string]string{"username": "alice", "password": "alice-pw"},
			wantStatus: http.StatusOK, wantPage: "Signed in as alice", wantToken: true,
		},
		{
			name:       "deny",
			fields:     map[string]string{"username": "alice", "password": "alice-pw", "action": "deny"},
			wantStatus: http.StatusOK, wantPage: "not signed in", wantError: "access_denied",
		},
		{
			name:       "wrong password",
			fields:     map[string]string{"username": "alice", "password": "nope"},
			wantStatus: http.StatusUnauthorized, wantPage: "Wrong username or password",
		},
		{
			name:       "wrong code",
			fields:     map[string]string{"user_code": "BCDF-GHJK", "username": "alice", "password": "alice-pw"},
			wantStatus: http.StatusBadRequest, wantPage: "That code is unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := startIdP(t, ecKey(t))
			ctx := testContext(t)
			oc := &oauth2.Config{
				ClientID:     "web",
				ClientSecret: "web-secret",
				Endpoint: oauth2.Endpoint{
					DeviceAuthURL: env.issuer + "/device_authorization",
					TokenURL:      env.issuer + "/oauth/token",
				},
				Scopes: []string{oidc.ScopeOpenID, "email", "groups"},
			}
			da, err := oc.DeviceAuth(ctx)
			if err != nil {
				t.Fatalf("device authorization: %v", err)
			}
			if da.VerificationURI != env.issuer+"/device" || da.UserCode == "" || da.Interval != 1 {
				t.Fatalf("device authorization: got %+v; want verification URI %s/device, a user code, interval 1", da, env.issuer)
			}
			br := browser.New(nil)
			form, err := br.Get(ctx, da.VerificationURI)
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string]string{"user_code": strings.ToLower(da.UserCode)} // typed sloppily: accepted
			for k, v := range tt.fields {
				fields[k] = v
			}
			page, err := br.Submit(ctx, form, fields)
			if err != nil {
				t.Fatal(err)
			}
			if page.Status != tt.wantStatus || !strings.Contains(page.Body, tt.wantPage) {
				t.Fatalf("device page: got %d\n%s\nwant %d containing %q", page.Status, page.Body, tt.wantStatus, tt.wantPage)
			}
			if !tt.wantToken && tt.wantError == "" {
				return // the device is still pending; the form is shown again
			}
			tok, err := oc.DeviceAccessToken(ctx, da)
			var re *oauth2.RetrieveError
			switch {
			case tt.wantToken && err != nil:
				t.Fatalf("device token: %v", err)
			case !tt.wantToken && !(errors.As(err, &re) && re.ErrorCode == tt.wantError):
				t.Fatalf("device token: got %v; want OAuth error %s", err, tt.wantError)
			case !tt.wantToken:
				return
			}
			raw, _ := tok.Extra("id_token").(string)
			provider, err := oidc.NewProvider(ctx, env.issuer)
			if err != nil {
				t.Fatal(err)
			}
			idt, err := provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify device ID token: %v", err)
			}
			var claims struct {
				Email  string   `json:"email"`
				Groups []string `json:"groups"`
			}
			idt.Claims(&claims)
			if idt.Subject != "alice" || claims.Email != "alice@example.com" || strings.Join(claims.Groups, ",") != "dev,sre" {
				t.Errorf("device ID token: got sub %q email %q groups %v; want alice, alice@example.com, [dev sre]", idt.Subject, claims.Email, claims.Groups)
			}
			// The device code is single-use.
			if _, err := oc.DeviceAccessToken(ctx, da); !(errors.As(err, &re) && re.ErrorCode == "access_denied") {
				t.Errorf("second redemption of the device code: got %v; want access_denied", err)
			}
		})
	}
}
