// Package devidp is the OpenID Provider that `jitproxy dev` embeds: a real OP
// (github.com/zitadel/oidc/v3/pkg/op) with discovery, JWKS, the authorization
// code flow with PKCE, the device authorization grant, userinfo, and plain
// HTML forms for signing in, over a fixed list of users and clients from the
// dev config. It keeps logins and tokens in memory and issues no refresh
// tokens; it is for development and tests, never for production identities.
package devidp

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Errors returned by New.
var (
	ErrInvalidConfig  = errors.New("devidp: invalid config")
	ErrUnsupportedKey = errors.New("devidp: unsupported signing key")
)

// Defaults for the optional durations in Config.
const (
	defaultIDTokenLifetime    = time.Hour
	defaultDevicePollInterval = 5 * time.Second
	defaultDeviceLifetime     = 10 * time.Minute
	// loginTTL bounds how long a started sign-in (an authorization request)
	// waits for the person to submit the form.
	loginTTL = 10 * time.Minute
	// codeTTL bounds how long an authorization code can be redeemed.
	codeTTL = time.Minute
)

// User is one account that can sign in. Its subject is its Username.
type User struct {
	Username string
	Password string
	Email    string
	Name     string
	Groups   []string
}

// Client is one registered OAuth client. With a Secret it is a confidential
// (web) client that authenticates to the token endpoint; without one it is a
// public (native) client that must use PKCE and may redirect to any loopback
// port of a registered loopback redirect URI (RFC 8252).
type Client struct {
	ID           string
	Secret       string // empty for a public client
	RedirectURIs []string
}

// Config configures the dev OpenID Provider.
type Config struct {
	// Issuer is the provider's URL including its path, for example
	// http://127.0.0.1:8080/dev-idp. The Provider serves requests under that
	// path. Plain http is accepted only for a loopback host.
	Issuer  string
	Users   []User
	Clients []Client

	// SigningKey signs ID tokens: an *rsa.PrivateKey (RS256, at least 2048
	// bits) or an *ecdsa.PrivateKey (ES256/384/512). nil means load KeyFile.
	SigningKey crypto.Signer
	// KeyFile is a PEM private key, read at start, or generated (RSA) and
	// written with mode 0600 when missing, so tokens survive restarts.
	// Empty with a nil SigningKey means a fresh in-memory key per New.
	KeyFile string

	IDTokenLifetime    time.Duration // 0 means 1h; also the access token lifetime
	DevicePollInterval time.Duration // 0 means 5s; rounded down to whole seconds, at least 1s
	DeviceLifetime     time.Duration // 0 means 10m: how long a device user code stays valid

	Logger zerolog.Logger
	// Now dates sign-ins, codes and device codes. nil means time.Now. The op
	// library dates tokens with the real clock whatever Now says.
	Now func() time.Time
}

// Provider is the dev OpenID Provider, an http.Handler serving under the
// issuer's path: /.well-known/openid-configuration, /keys, /authorize,
// /oauth/token, /userinfo, /device_authorization, /login (the sign-in form),
// /device (the device user-code form), and the other routes of op.Provider.
type Provider struct {
	issuer  string
	prefix  string // issuer URL path without trailing slash; "" at the root
	log     zerolog.Logger
	store   *storage
	pages   *template.Template
	op      *op.Provider
	handler http.Handler
}

// New validates cfg, loads or creates the signing key and builds the provider.
func New(cfg Config) (*Provider, error) {
	iss, insecure, err := parseIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IDTokenLifetime == 0 {
		cfg.IDTokenLifetime = defaultIDTokenLifetime
	}
	if cfg.DevicePollInterval == 0 {
		cfg.DevicePollInterval = defaultDevicePollInterval
	}
	cfg.DevicePollInterval = max(cfg.DevicePollInterval.Truncate(time.Second), time.Second)
	if cfg.DeviceLifetime == 0 {
		cfg.DeviceLifetime = defaultDeviceLifetime
	}
	if cfg.IDTokenLifetime < 0 || cfg.DeviceLifetime < 0 {
		return nil, fmt.Errorf("%w: negative lifetime", ErrInvalidConfig)
	}
	users, err := indexUsers(cfg.Users)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(iss.Path, "/")
	clients, err := indexClients(cfg.Clients, prefix, cfg.IDTokenLifetime)
	if err != nil {
		return nil, err
	}
	signer := cfg.SigningKey
	if signer == nil && cfg.KeyFile != "" {
		if signer, err = loadOrCreateKey(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	if signer == nil {
		if signer, err = generateKey(); err != nil {
			return nil, err
		}
	}
	key, err := newSigningKey(signer)
	if err != nil {
		return nil, err
	}

	p := &Provider{
		issuer: cfg.Issuer,
		prefix: prefix,
		log:    cfg.Logger,
		pages:  parsePages(),
	}
	p.store = newStorage(storageConfig{
		users:          users,
		clients:        clients,
		key:            key,
		now:            cfg.Now,
		tokenLifetime:  cfg.IDTokenLifetime,
		deviceLifetime: cfg.DeviceLifetime,
	})

	// The op encrypts its opaque access tokens with this key; a fresh one per
	// process only means access tokens do not outlive a restart.
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: access token key: %w", err)
	}
	opCfg := &op.Config{
		CryptoKey:          cryptoKey,
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
		SupportedScopes:    []string{"openid", "profile", "email", scopeGroups},
		SupportedClaims:    append(append([]string(nil), op.DefaultSupportedClaims...), claimGroups),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     cfg.DeviceLifetime,
			PollInterval: cfg.DevicePollInterval,
			UserFormPath: prefix + devicePath,
			UserCode:     op.UserCodeBase20,
		},
	}
	var opts []op.Option
	if insecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	p.op, err = op.NewProvider(opCfg, p.store, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: create provider: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, p.serveLoginForm)
	mux.HandleFunc("POST "+loginPath, p.submitLoginForm)
	mux.HandleFunc("GET "+devicePath, p.serveDeviceForm)
	mux.HandleFunc("POST "+devicePath, p.submitDeviceForm)
	mux.Handle("/", p.op)
	p.handler = mux
	return p, nil
}

// Issuer returns the issuer URL the provider was configured with.
func (p *Provider) Issuer() string { return p.issuer }

// KeyID returns the key ID ("kid") of the signing key, its RFC 7638 thumbprint.
func (p *Provider) KeyID() string { return p.store.key.id }

// ServeHTTP serves the provider's routes under the issuer's path and
// answers 404 for anything outside it.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.prefix == "" {
		p.handler.ServeHTTP(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, p.prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = rest
	if rest == "" {
		r2.URL.Path = "/"
	}
	r2.URL.RawPath = ""
	p.handler.ServeHTTP(w, r2)
}

// callbackURL is where a finished sign-in hands the authorization request back to the op.
func (p *Provider) callbackURL(authRequestID string) string {
	return p.issuer + "/authorize/callback?id=" + url.QueryEscape(authRequestID)
}

func parseIssuer(issuer string) (u *url.URL, insecure bool, err error) {
	u, err = url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(issuer, "/") {
		return nil, false, fmt.Errorf("%w: issuer %q must be an absolute URL without query, fragment or trailing slash", ErrInvalidConfig, issuer)
	}
	switch u.Scheme {
	case "https":
		return u, false, nil
	case "http":
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, false, fmt.Errorf("%w: issuer %q: plain http is allowed only on a loopback address", ErrInvalidConfig, issuer)
		}
		return u, true, nil
	default:
		return nil, false, fmt.Errorf("%w: issuer %q must use http or https", ErrInvalidConfig, issuer)
	}
}

func indexUsers(users []User) (map[string]User, error) {
	if len(users) == 0 {
		return nil, fmt.Errorf("%w: no users", ErrInvalidConfig)
	}
	m := make(map[string]User, len(users))
	for _, u := range users {
		switch {
		case u.Username == "":
			return nil, fmt.Errorf("%w: a user has no username", ErrInvalidConfig)
		case u.Password == "":
			return nil, fmt.Errorf("%w: user %q has no password", ErrInvalidConfig, u.Username)
		case u.Email == "":
			return nil, fmt.Errorf("%w: user %q has no email", ErrInvalidConfig, u.Username)
		}
		if _, dup := m[u.Username]; dup {
			return nil, fmt.Errorf("%w: user %q listed twice", ErrInvalidConfig, u.Username)
		}
		u.Groups = append([]string(nil), u.Groups...)
		m[u.Username] = u
	}
	return m, nil
}

func indexClients(clients []Client, prefix string, idTokenLifetime time.Duration) (map[string]*client, error) {
	if len(clients) == 0 {
		return nil, fmt.Errorf("%w: no clients", ErrInvalidConfig)
	}
	m := make(map[string]*client, len(clients))
	for _, c := range clients {
		if c.ID == "" {
			return nil, fmt.Errorf("%w: a client has no ID", ErrInvalidConfig)
		}
		if _, dup := m[c.ID]; dup {
			return nil, fmt.Errorf("%w: client %q listed twice", ErrInvalidConfig, c.ID)
		}
		for _, ru := range c.RedirectURIs {
			u, err := url.Parse(ru)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, fmt.Errorf("%w: client %q: redirect URI %q must be an absolute http(s) URL", ErrInvalidConfig, c.ID, ru)
			}
		}
		m[c.ID] = &client{
			id:              c.ID,
			secret:          c.Secret,
			redirectURIs:    append([]string(nil), c.RedirectURIs...),
			loginPath:       prefix + loginPath,
			idTokenLifetime: idTokenLifetime,
		}
	}
	return m, nil
}
