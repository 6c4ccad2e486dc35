package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Defaults for VerifierConfig.
const (
	defaultEmailClaim  = "email"
	defaultNameClaim   = "name"
	defaultGroupsClaim = "groups"
	// idpTimeout bounds each call to the identity provider (discovery, JWKS, token).
	idpTimeout = 30 * time.Second
)

// VerifierConfig names the identity provider and jitproxy's client there.
type VerifierConfig struct {
	Issuer       string // the IdP's issuer URL, exactly as in its discovery document
	ClientID     string // jitproxy's client ID at the IdP; ID tokens must be for it
	ClientSecret string // jitproxy's client secret; empty for a public client
	// RedirectURL is the Broker's callback as the browser reaches it, for
	// example http://127.0.0.1:8080/auth/callback. Only the Broker needs it.
	RedirectURL string
	Scopes      []string // nil means openid, email, profile; openid is always added

	EmailClaim  string // "" means "email"
	NameClaim   string // "" means "name"
	GroupsClaim string // "" means "groups"

	HTTPClient *http.Client     // nil means a client with a 30s timeout
	Now        func() time.Time // nil means time.Now
	Logger     zerolog.Logger
}

// Verifier checks ID tokens from one identity provider with go-oidc:
// signature (against the provider's JWKS), issuer, audience, expiry and
// nonce, and maps the claims to an Identity. Discovery is lazy: it happens on
// first use and is retried on later use until it succeeds, because the dev
// provider may be served by this very process, not yet listening.
type Verifier struct {
	cfg    VerifierConfig
	client *http.Client
	log    zerolog.Logger

	mu   sync.Mutex  // guards disc; held during discovery so only one runs
	disc *discovered // nil until discovery succeeds
}

// discovered is what discovery yields; it never changes afterwards.
type discovered struct {
	endpoint oauth2.Endpoint
	keys     *oidc.RemoteKeySet
	verifier *oidc.IDTokenVerifier
}

// NewVerifier validates cfg. It does not contact the identity provider.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("auth: verifier: %w: issuer %q must be an absolute http(s) URL", ErrInvalidConfig, cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("auth: verifier: %w: no client ID", ErrInvalidConfig)
	}
	if cfg.RedirectURL != "" {
		if u, err := url.Parse(cfg.RedirectURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("auth: verifier: %w: redirect URL %q must be an absolute http(s) URL", ErrInvalidConfig, cfg.RedirectURL)
		}
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.EmailClaim == "" {
		cfg.EmailClaim = defaultEmailClaim
	}
	if cfg.NameClaim == "" {
		cfg.NameClaim = defaultNameClaim
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = defaultGroupsClaim
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: idpTimeout}
	}
	return &Verifier{
		cfg:    cfg,
		client: client,
		log:    cfg.Logger.With().Str("issuer", cfg.Issuer).Logger(),
	}, nil
}

// Issuer returns the configured issuer URL.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// clientContext carries the verifier's HTTP client to go-oidc and x/oauth2.
func (v *Verifier) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, v.client)
}

// discover fetches the discovery document once it can, and caches it.
func (v *Verifier) discover(ctx context.Context) (*discovered, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.disc != nil {
		return v.disc, nil
	}
	p, err := oidc.NewProvider(v.clientContext(ctx), v.cfg.Issuer)
	if err != nil {
		v.log.Warn().Err(err).Msg("OIDC discovery failed; will retry on next use")
		return nil, fmt.Errorf("auth: discover %s: %w: %v", v.cfg.Issuer, ErrIdPUnavailable, err)
	}
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURL == "" {
		return nil, fmt.Errorf("auth: discover %s: %w: no jwks_uri", v.cfg.Issuer, ErrIdPUnavailable)
	}
	// One key set for verifying and for explaining failures. Its context only
	// carries the HTTP client; each call passes its own for cancellation.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), v.client), meta.JWKSURL)
	v.disc = &discovered{
		endpoint: p.Endpoint(),
		keys:     keys,
		verifier: oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
			ClientID:             v.cfg.ClientID,
			SupportedSigningAlgs: signingAlgs(meta.Algs),
			Now:                  v.cfg.Now,
		}),
	}
	v.log.Info().Msg("OIDC discovery done")
	return v.disc, nil
}

// signingAlgs keeps the asymmetric algorithms go-oidc verifies; none means
// go-oidc's default, RS256.
func signingAlgs(advertised []string) []string {
	known := []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}
	var algs []string
	for _, a := range advertised {
		if slices.Contains(known, a) {
			algs = append(algs, a)
		}
	}
	return algs
}

// oauth2Config is jitproxy's OAuth client at the IdP, after discovery.
func (v *Verifier) oauth2Config(ctx context.Context) (*oauth2.Config, error) {
	d, err := v.discover(ctx)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID:     v.cfg.ClientID,
		ClientSecret: v.cfg.ClientSecret,
		Endpoint:     d.endpoint,
		RedirectURL:  v.cfg.RedirectURL,
		Scopes:       slices.Clone(v.cfg.Scopes),
	}, nil
}

// Verify checks rawIDToken and returns the identity it carries. nonce must
// equal the token's nonce claim; pass "" for flows without one (the device
// grant), and the token must then carry none. An ID token without an email
// (or with email_verified false) is refused.
func (v *Verifier) Verify(ctx context.Context, rawIDToken, nonce string) (Identity, error) {
	d, err := v.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := d.verifier.Verify(ctx, rawIDToken)
	if err != nil {
		return Identity{}, v.explain(ctx, d, rawIDToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(nonce)) != 1 {
		return Identity{}, fmt.Errorf("auth: verify ID token: %w", ErrNonceMismatch)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("auth: verify ID token: %w: %v", ErrMalformedToken, err)
	}
	id := Identity{Subject: tok.Subject, Issuer: tok.Issuer}
	email, _ := claims[v.cfg.EmailClaim].(string)
	id.Email = strings.TrimSpace(email)
	if id.Email == "" {
		return Identity{}, fmt.Errorf("auth: verify ID token: %w (claim %q)", ErrNoEmail, v.cfg.EmailClaim)
	}
	if verified, ok := claims["email_verified"]; ok && (verified == false || verified == "false") {
		return Identity{}, fmt.Errorf("auth: verify ID token for %s: %w", id.Email, ErrEmailNotVerified)
	}
	id.Name, _ = claims[v.cfg.NameClaim].(string)
	if id.Groups, err = stringList(claims[v.cfg.GroupsClaim]); err != nil {
		return Identity{}, fmt.Errorf("auth: verify ID token: %w: claim %q: %v", ErrMalformedToken, v.cfg.GroupsClaim, err)
	}
	return id, nil
}

// explain turns a go-oidc failure into one of the ErrInvalidToken family.
// go-oidc has typed errors for expiry only, so the other cases are told
// apart by re-checking the (unverified) claims and the signature alone.
// Nothing here accepts a token; it only names why it was refused.
func (v *Verifier) explain(ctx context.Context, d *discovered, raw string, verr error) error {
	var expired *oidc.TokenExpiredError
	if errors.As(verr, &expired) {
		return fmt.Errorf("auth: verify ID token: %w at %s", ErrTokenExpired, expired.Expiry.UTC().Format(time.RFC3339))
	}
	c, err := unverifiedClaims(raw)
	if err != nil {
		return fmt.Errorf("auth: verify ID token: %w: %v", ErrMalformedToken, err)
	}
	if c.Issuer != v.cfg.Issuer {
		return fmt.Errorf("auth: verify ID token: %w: issuer %q, want %q", ErrWrongIssuer, c.Issuer, v.cfg.Issuer)
	}
	if !slices.Contains(c.Audience, v.cfg.ClientID) {
		return fmt.Errorf("auth: verify ID token: %w: audience %q, want %q", ErrWrongAudience, []string(c.Audience), v.cfg.ClientID)
	}
	if _, err := d.keys.VerifySignature(ctx, raw); err != nil {
		return fmt.Errorf("auth: verify ID token: %w (%v)", ErrBadSignature, err)
	}
	return fmt.Errorf("auth: verify ID token: %w: %v", ErrInvalidToken, verr)
}

// jwtClaims is the part of an unverified payload that explain reads.
type jwtClaims struct {
	Issuer   string   `json:"iss"`
	Audience audience `json:"aud"`
}

// audience is the "aud" claim: one string or a list.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

func unverifiedClaims(raw string) (jwtClaims, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return jwtClaims{}, errors.New("want three dot-separated parts")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return jwtClaims{}, fmt.Errorf("payload: %w", err)
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return jwtClaims{}, fmt.Errorf("payload: %w", err)
	}
	return c, nil
}

// stringList reads a groups claim: absent, one string, or a list of strings.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("has a %T element, want strings", e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("is a %T, want a list of strings", v)
	}
}
