package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Defaults for BrokerConfig.
const (
	defaultSessionLifetime = 12 * time.Hour
	defaultLoginTimeout    = 10 * time.Minute
	defaultCodeLifetime    = time.Minute
	defaultMaxPending      = 1000
	// maxStateLen bounds the CLI's state parameter.
	maxStateLen = 512
	// callbackPath is the route the IdP redirects the browser back to.
	callbackPath = "/auth/callback"
	// loginCookiePrefix names the cookie binding a login to the browser that started it.
	loginCookiePrefix = "jitproxy_login_"
)

// BrokerConfig configures the server side of login.
type BrokerConfig struct {
	// Verifier names the IdP and jitproxy's client there; its RedirectURL
	// must be this broker's /auth/callback as the browser reaches it.
	Verifier *Verifier
	Sessions SessionStore // where session tokens (their hashes) live

	SessionLifetime time.Duration // 0 means 12h
	LoginTimeout    time.Duration // 0 means 10m: time to sign in at the IdP
	CodeLifetime    time.Duration // 0 means 1m: time for the CLI to redeem its one-time code
	MaxPending      int           // 0 means 1000 each of logins, codes and device logins in flight

	// OnLogin is called after each successful login, with the new session's
	// identity, to write an audit row. nil means none.
	OnLogin func(ctx context.Context, id Identity)

	Now    func() time.Time // nil means time.Now
	Logger zerolog.Logger
}

// Broker runs the login flows on the server, where jitproxy is the OIDC
// client and holds the client secret, and issues session tokens. It is an
// http.Handler for these routes:
//
//	GET  /auth/login          browser: start a login for a CLI's loopback redirect_uri
//	GET  /auth/callback       browser: the IdP's redirect back
//	POST /auth/token          CLI: {code, code_verifier} → TokenResponse
//	POST /auth/device         CLI: start a device login → DeviceStart
//	POST /auth/device/token   CLI: {handle} → {"status":"pending"} or TokenResponse
//	POST /auth/logout         CLI: revoke the Bearer session token
type Broker struct {
	cfg      BrokerConfig
	verifier *Verifier
	log      zerolog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	cookie   string // path of the login-binding cookie

	logins  *pending[loginTxn]
	codes   *pending[codeGrant]
	devices *pending[deviceTxn]

	// ctx ends the device-poll goroutines on Close; wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// loginTxn is a browser login between /auth/login and /auth/callback.
type loginTxn struct {
	cliRedirect  *url.URL
	cliState     string
	cliChallenge string
	nonce        string
	verifier     string   // PKCE verifier for the IdP
	bindingHash  [32]byte // SHA-256 of the login cookie's value
}

// codeGrant is what a one-time proxy code stands for until /auth/token.
type codeGrant struct {
	identity  Identity
	challenge string // the CLI's S256 code_challenge
}

// NewBroker validates cfg and returns a Broker. Call Close when done.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("auth: broker: %w: no verifier", ErrInvalidConfig)
	}
	if cfg.Sessions == nil {
		return nil, fmt.Errorf("auth: broker: %w: no session store", ErrInvalidConfig)
	}
	redirect, err := url.Parse(cfg.Verifier.cfg.RedirectURL)
	if err != nil || redirect.Host == "" || !strings.HasSuffix(redirect.Path, callbackPath) {
		return nil, fmt.Errorf("auth: broker: %w: the verifier's redirect URL %q must end in %s", ErrInvalidConfig, cfg.Verifier.cfg.RedirectURL, callbackPath)
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = defaultSessionLifetime
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = defaultLoginTimeout
	}
	if cfg.CodeLifetime == 0 {
		cfg.CodeLifetime = defaultCodeLifetime
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.SessionLifetime < 0 || cfg.LoginTimeout < 0 || cfg.CodeLifetime < 0 || cfg.MaxPending < 0 {
		return nil, fmt.Errorf("auth: broker: %w: negative lifetime or bound", ErrInvalidConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:      cfg,
		verifier: cfg.Verifier,
		log:      cfg.Logger,
		now:      cfg.Now,
		cookie:   redirect.Path,
		logins:   newPending[loginTxn](cfg.MaxPending, cfg.Now),
		codes:    newPending[codeGrant](cfg.MaxPending, cfg.Now),
		devices:  newPending[deviceTxn](cfg.MaxPending, cfg.Now),
		ctx:      ctx,
		cancel:   cancel,
	}
	b.mux = http.NewServeMux()
	b.mux.HandleFunc("GET /auth/login", b.handleLogin)
	b.mux.HandleFunc("GET "+callbackPath, b.handleCallback)
	b.mux.HandleFunc("POST /auth/token", b.handleToken)
	b.mux.HandleFunc("POST /auth/device", b.handleDeviceStart)
	b.mux.HandleFunc("POST /auth/device/token", b.handleDevicePoll)
	b.mux.HandleFunc("POST /auth/logout", b.handleLogout)
	return b, nil
}

// ServeHTTP serves the /auth/ routes.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mux.ServeHTTP(w, r)
}

// Close stops the device logins in flight and waits for their goroutines.
func (b *Broker) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

// Authenticate returns the identity of the request's
// "Authorization: Bearer jpt_…" session token. Errors: ErrNotLoggedIn (no
// token), ErrSessionExpired, ErrSessionRevoked (revoked or unknown).
func (b *Broker) Authenticate(r *http.Request) (Identity, error) {
	token, err := bearerToken(r)
	if err != nil {
		return Identity{}, err
	}
	return b.AuthenticateToken(r.Context(), token)
}

// AuthenticateToken is Authenticate for a token already taken from its carrier.
func (b *Broker) AuthenticateToken(ctx context.Context, token string) (Identity, error) {
	if !strings.HasPrefix(token, SessionTokenPrefix) {
		return Identity{}, fmt.Errorf("auth: authenticate: %w", ErrSessionRevoked)
	}
	hash := hashSessionToken(token)
	s, err := b.cfg.Sessions.GetSession(ctx, hash)
	if errors.Is(err, ErrSessionNotFound) {
		return Identity{}, fmt.Errorf("auth: authenticate: %w", ErrSessionRevoked)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("auth: authenticate: look up session: %w", err)
	}
	if !b.now().Before(s.ExpiresAt) {
		if err := b.cfg.Sessions.DeleteSession(ctx, hash); err != nil && !errors.Is(err, ErrSessionNotFound) {
			b.log.Warn().Err(err).Str("email", s.Identity.Email).Msg("drop expired session")
		}
		return Identity{}, fmt.Errorf("auth: authenticate %s: %w", s.Identity.Email, ErrSessionExpired)
	}
	return s.Identity, nil
}

// bearerToken reads the Authorization header's Bearer token.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fmt.Errorf("auth: authenticate: %w", ErrNotLoggedIn)
	}
	return token, nil
}

// handleLogin starts a browser login for a CLI waiting on a loopback
// redirect_uri, then sends the browser to the IdP.
func (b *Broker) handleLogin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := parseLoopbackRedirect(q.Get("redirect_uri"))
	if err != nil {
		b.log.Info().Err(err).Msg("login refused: bad redirect_uri")
		writePage(w, http.StatusBadRequest, "Login refused", err.Error())
		return
	}
	state := q.Get("state")
	challenge := q.Get("code_challenge")
	switch {
	case state == "" || len(state) > maxStateLen:
		err = fmt.Errorf("auth: login: %w: state must be 1 to %d characters", ErrInvalidRequest, maxStateLen)
	case q.Get("code_challenge_method") != "S256":
		err = fmt.Errorf("auth: login: %w: code_challenge_method must be S256", ErrInvalidRequest)
	case len(challenge) != 43 || !isPKCEString(challenge):
		err = fmt.Errorf("auth: login: %w: code_challenge must be an S256 challenge (43 base64url characters)", ErrInvalidRequest)
	}
	if err != nil {
		writePage(w, http.StatusBadRequest, "Login refused", err.Error())
		return
	}
	oc, err := b.verifier.oauth2Config(r.Context())
	if err != nil {
		writePage(w, http.StatusBadGateway, "Identity provider unavailable", err.Error())
		return
	}
	proxyState, binding := randomString(), randomString()
	txn := loginTxn{
		cliRedirect:  redirect,
		cliState:     state,
		cliChallenge: challenge,
		nonce:        randomString(),
		verifier:     oauth2.GenerateVerifier(),
		bindingHash:  sha256.Sum256([]byte(binding)),
	}
	if err := b.logins.add(proxyState, txn, b.now().Add(b.cfg.LoginTimeout)); err != nil {
		b.log.Warn().Msg("login refused: too many logins in progress")
		writePage(w, http.StatusServiceUnavailable, "Too many logins", err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     loginCookieName(proxyState),
		Value:    binding,
		Path:     b.cookie,
		MaxAge:   int(b.cfg.LoginTimeout / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
	b.log.Info().Str("redirect_port", redirect.Port()).Msg("login started")
	http.Redirect(w, r, oc.AuthCodeURL(proxyState, oidc.Nonce(txn.nonce), oauth2.S256ChallengeOption(txn.verifier)), http.StatusFound)
}

// parseLoopbackRedirect accepts only http://127.0.0.1:PORT/… and
// http://[::1]:PORT/… (RFC 8252, section 7.3), so the one-time code can only
// reach a listener on the person's own machine.
func parseLoopbackRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("auth: login: %w (got %q)", ErrInvalidRedirectURI, raw)
	}
	host := u.Hostname()
	port, perr := strconv.Atoi(u.Port())
	if (host != "127.0.0.1" && host != "::1") || perr != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("auth: login: %w (got %q)", ErrInvalidRedirectURI, raw)
	}
	return u, nil
}

func loginCookieName(proxyState string) string {
	sum := sha256.Sum256([]byte(proxyState))
	return loginCookiePrefix + hex.EncodeToString(sum[:8])
}

// handleCallback finishes the IdP side of a browser login and hands the CLI
// a one-time code bound to its code_challenge.
func (b *Broker) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	proxyState := q.Get("state")
	txn, ok := b.logins.take(proxyState)
	if !ok {
		writePage(w, http.StatusBadRequest, "Login expired",
			"This login is unknown, already finished or expired. Run `jitproxy login` again.")
		return
	}
	name := loginCookieName(proxyState)
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: b.cookie, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(name)
	if err != nil {
		writePage(w, http.StatusBadRequest, "Login refused",
			"This login was not started in this browser, or the browser blocked its cookie. Run `jitproxy login` again and finish it in the browser it opens.")
		return
	}
	got := sha256.Sum256([]byte(c.Value))
	if subtle.ConstantTimeCompare(got[:], txn.bindingHash[:]) != 1 {
		writePage(w, http.StatusBadRequest, "Login refused",
			"This login was not started in this browser. Run `jitproxy login` again and finish it in the browser it opens.")
		return
	}
	if idpErr := q.Get("error"); idpErr != "" {
		desc := q.Get("error_description")
		b.log.Info().Str("idp_error", idpErr).Str("description", desc).Msg("login failed at the identity provider")
		b.redirectCLI(w, r, txn, url.Values{"error": {idpErr}, "error_description": {desc}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), idpTimeout)
	defer cancel()
	id, err := b.exchange(ctx, q.Get("code"), txn)
	if err != nil {
		b.log.Warn().Err(err).Msg("login failed")
		b.redirectCLI(w, r, txn, url.Values{"error": {"access_denied"}, "error_description": {err.Error()}})
		return
	}
	code := randomString()
	if err := b.codes.add(code, codeGrant{identity: id, challenge: txn.cliChallenge}, b.now().Add(b.cfg.CodeLifetime)); err != nil {
		b.redirectCLI(w, r, txn, url.Values{"error": {"temporarily_unavailable"}, "error_description": {err.Error()}})
		return
	}
	b.log.Info().Str("email", id.Email).Str("subject", id.Subject).Msg("login verified; one-time code sent to the CLI")
	b.redirectCLI(w, r, txn, url.Values{"code": {code}})
}

// exchange redeems the IdP's code (client secret and PKCE verifier) and
// verifies the ID token it returns, nonce included.
func (b *Broker) exchange(ctx context.Context, code string, txn loginTxn) (Identity, error) {
	if code == "" {
		return Identity{}, fmt.Errorf("auth: callback: %w: no code from the identity provider", ErrLoginFailed)
	}
	oc, err := b.verifier.oauth2Config(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := oc.Exchange(b.verifier.clientContext(ctx), code, oauth2.VerifierOption(txn.verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("auth: callback: %w: code exchange: %s", ErrLoginFailed, describeOAuthError(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("auth: callback: %w: the identity provider returned no ID token (is the openid scope allowed?)", ErrLoginFailed)
	}
	return b.verifier.Verify(ctx, raw, txn.nonce)
}

// describeOAuthError renders an x/oauth2 error without the response body.
func describeOAuthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return strings.TrimSpace(re.ErrorCode + " " + re.ErrorDescription)
		}
		if re.Response != nil {
			return "HTTP " + re.Response.Status
		}
	}
	return err.Error()
}

// redirectCLI sends the browser to the CLI's loopback redirect_uri with
// params and the CLI's own state.
func (b *Broker) redirectCLI(w http.ResponseWriter, r *http.Request, txn loginTxn, params url.Values) {
	u := *txn.cliRedirect
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Set("state", txn.cliState)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// handleToken redeems a one-time code (once) for a session token.
func (b *Broker) handleToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	grant, ok := b.codes.take(req.Code)
	if !ok {
		b.log.Info().Msg("token refused: unknown, used or expired code")
		writeError(w, fmt.Errorf("auth: token: %w", ErrInvalidCode))
		return
	}
	if !verifyS256(req.CodeVerifier, grant.challenge) {
		b.log.Warn().Str("email", grant.identity.Email).Msg("token refused: code_verifier does not match; code burnt")
		writeError(w, fmt.Errorf("auth: token: %w", ErrCodeVerifierMismatch))
		return
	}
	resp, err := b.startSession(r.Context(), grant.identity, "browser")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// startSession issues a session token for id and reports the login.
func (b *Broker) startSession(ctx context.Context, id Identity, method string) (TokenResponse, error) {
	token, hash, err := newSessionToken()
	if err != nil {
		return TokenResponse{}, err
	}
	now := b.now()
	s := Session{TokenHash: hash, Identity: id, IssuedAt: now, ExpiresAt: now.Add(b.cfg.SessionLifetime)}
	if err := b.cfg.Sessions.CreateSession(ctx, s); err != nil {
		return TokenResponse{}, fmt.Errorf("auth: start session for %s: %w", id.Email, err)
	}
	b.log.Info().Str("email", id.Email).Str("subject", id.Subject).Str("method", method).
		Time("expires_at", s.ExpiresAt).Msg("logged in")
	if b.cfg.OnLogin != nil {
		b.cfg.OnLogin(ctx, id)
	}
	return TokenResponse{Token: token, ExpiresAt: s.ExpiresAt, Identity: id}, nil
}

// handleLogout revokes the Bearer session token.
func (b *Broker) handleLogout(w http.ResponseWriter, r *http.Request) {
	token, err := bearerToken(r)
	if err != nil {
		writeError(w, err)
		return
	}
	hash := hashSessionToken(token)
	s, err := b.cfg.Sessions.GetSession(r.Context(), hash)
	if err == nil {
		err = b.cfg.Sessions.DeleteSession(r.Context(), hash)
	}
	if errors.Is(err, ErrSessionNotFound) {
		writeError(w, fmt.Errorf("auth: logout: %w", ErrSessionRevoked))
		return
	}
	if err != nil {
		writeError(w, fmt.Errorf("auth: logout: %w", err))
		return
	}
	b.log.Info().Str("email", s.Identity.Email).Str("subject", s.Identity.Subject).Msg("logged out")
	w.WriteHeader(http.StatusNoContent)
}
