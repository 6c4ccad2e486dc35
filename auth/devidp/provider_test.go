package devidp_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/auth/devidp"
)

// deadRedirect is a loopback redirect URI nobody listens on: the test
// browser stops there and reads the code from the Location header.
const deadRedirect = "http://127.0.0.1:9/callback"

type idpEnv struct {
	base   string // http://127.0.0.1:PORT
	issuer string // base + /dev-idp
	idp    *devidp.Provider
}

func testUsers() []devidp.User {
	return []devidp.User{
		{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Name: "Alice Liddell", Groups: []string{"dev", "sre"}},
		{Username: "bob", Password: "bob-pw", Email: "bob@example.com", Name: "Bob"},
	}
}

// startIdP serves a dev IdP at /dev-idp on a fresh loopback server, with a
// public client "cli" and a confidential client "web" (secret "web-secret").
func startIdP(t *testing.T, key crypto.Signer) *idpEnv {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer: base + "/dev-idp",
		Users:  testUsers(),
		Clients: []devidp.Client{
			{ID: "cli", RedirectURIs: []string{"http://127.0.0.1/callback"}},
			{ID: "web", Secret: "web-secret", RedirectURIs: []string{deadRedirect}},
		},
		SigningKey:         key,
		DevicePollInterval: time.Second,
		Logger:             zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatalf("devidp.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dev-idp/", idp)
	mux.Handle("/dev-idp", idp)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return &idpEnv{base: base, issuer: base + "/dev-idp", idp: idp}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewRejectsBadConfig(t *testing.T) {
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok := devidp.Config{
		Issuer:     "http://127.0.0.1:8080/dev-idp",
		Users:      testUsers(),
		Clients:    []devidp.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		SigningKey: ecKey(t),
	}
	tests := []struct {
		name   string
		modify func(*devidp.Config)
		want   error
	}{
		{"valid", func(*devidp.Config) {}, nil},
		{"http on a public host", func(c *devidp.Config) { c.Issuer = "http://idp.example.com/dev-idp" }, devidp.ErrInvalidConfig},
		{"trailing slash", func(c *devidp.Config) { c.Issuer += "/" }, devidp.ErrInvalidConfig},
		{"no users", func(c *devidp.Config) { c.Users = nil }, devidp.ErrInvalidConfig},
		{"duplicate user", func(c *devidp.Config) { c.Users = append(c.Users, c.Users[0]) }, devidp.ErrInvalidConfig},
		{"user without email", func(c *devidp.Config) { c.Users = []devidp.User{{Username: "x", Password: "y"}} }, devidp.ErrInvalidConfig},
		{"user without password", func(c *devidp.Config) { c.Users = []devidp.User{{Username: "x", Email: "x@example.com"}} }, devidp.ErrInvalidConfig},
		{"client without ID", func(c *devidp.Config) { c.Clients = []devidp.Client{{}} }, devidp.ErrInvalidConfig},
		{"relative redirect URI", func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"/callback"} }, devidp.ErrInvalidConfig},
		{"ed25519 key", func(c *devidp.Config) { c.SigningKey = edKey }, devidp.ErrUnsupportedKey},
		{"1024-bit RSA key", func(c *devidp.Config) { c.SigningKey = smallRSA }, devidp.ErrUnsupportedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Clients = slices.Clone(ok.Clients)
			cfg.Clients[0].RedirectURIs = slices.Clone(ok.Clients[0].RedirectURIs)
			tt.modify(&cfg)
			_, err := devidp.New(cfg)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("New: got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestKeyFileIsCreatedOnceAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "devidp-key.pem")
	cfg := devidp.Config{
		Issuer:  "http://127.0.0.1:8080/dev-idp",
		Users:   testUsers(),
		Clients: []devidp.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		KeyFile: path,
	}
	first, err := devidp.New(cfg)
	if err != nil {
		t.Fatalf("first New: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode: got %v; want 0600", got)
	}
	second, err := devidp.New(cfg)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if first.KeyID() != second.KeyID() {
		t.Errorf("key ID after restart: got %q; want %q (the same key)", second.KeyID(), first.KeyID())
	}
	other, err := devidp.New(devidp.Config{Issuer: cfg.Issuer, Users: cfg.Users, Clients: cfg.Clients})
	if err != nil {
		t.Fatal(err)
	}
	if other.KeyID() == first.KeyID() {
		t.Errorf("an in-memory key has the key file's ID %q", other.KeyID())
	}
}

func TestDiscoveryAndKeys(t *testing.T) {
	env := startIdP(t, ecKey(t))
	ctx := testContext(t)
	var doc struct {
		Issuer       string   `json:"issuer"`
		Authz        string   `json:"authorization_endpoint"`
		Device       string   `json:"device_authorization_endpoint"`
		JWKS         string   `json:"jwks_uri"`
		PKCE         []string `json:"code_challenge_methods_supported"`
		GrantTypes   []string `json:"grant_types_supported"`
		Algs         []string `json:"id_token_signing_alg_values_supported"`
		ClaimsSupped []string `json:"claims_supported"`
	}
	getJSON(t, ctx, env.issuer+"/.well-known/openid-configuration", &doc)
	tests := []struct {
		name      string
		got, want any
	}{
		{"issuer", doc.Issuer, env.issuer},
		{"authorization endpoint", doc.Authz, env.issuer + "/authorize"},
		{"device endpoint", doc.Device, env.issuer + "/device_authorization"},
		{"jwks", doc.JWKS, env.issuer + "/keys"},
		{"S256", slices.Contains(doc.PKCE, "S256"), true},
		{"device grant", slices.Contains(doc.GrantTypes, "urn:ietf:params:oauth:grant-type:device_code"), true},
		{"ES256", slices.Contains(doc.Algs, "ES256"), true},
		{"groups claim", slices.Contains(doc.ClaimsSupped, "groups"), true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, tt.got, tt.want)
		}
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	getJSON(t, ctx, doc.JWKS, &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kid != env.idp.KeyID() || jwks.Keys[0].Alg != "ES256" {
		t.Errorf("jwks: got %+v; want one ES256 key %q", jwks.Keys, env.idp.KeyID())
	}
}

func getJSON(t *testing.T, ctx context.Context, u string, v any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func TestOutsideIssuerPathIsNotFound(t *testing.T) {
	env := startIdP(t, ecKey(t))
	for _, p := range []string{"/dev-idpx/.well-known/openid-configuration", "/other/login", "/login"} {
		rec := httptest.NewRecorder()
		env.idp.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, env.base+p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: got status %d; want 404", p, rec.Code)
		}
	}
}
