package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/certs"
)

// SSHCredentials mints the user certificates people log in to the bastion
// with.
type SSHCredentials struct {
	// Authority signs the certificates and names the host CA that people's
	// known_hosts trusts.
	Authority interface {
		SignUser(pub ssh.PublicKey, req certs.UserCert) (*ssh.Certificate, error)
		KnownHosts(hostPattern string) []string
	}
	// Bastion is the host:port people's ssh connects to.
	Bastion string
}

// DBCredentials issues the tokens people give psql as a password.
type DBCredentials struct {
	Tokens interface {
		Issue(certs.Token) (string, error)
	}
	// Endpoint is the host:port of the PostgreSQL endpoint.
	Endpoint string
	// TTL caps a token's life; it never outlives its amendment either.
	// 0 means 1h.
	TTL time.Duration
}

// CertificateBody is the body of POST /api/v1/ssh/certificate.
type CertificateBody struct {
	// PublicKey is the person's public key in authorized_keys format.
	PublicKey string `json:"public_key"`
}

// Certificate answers POST /api/v1/ssh/certificate.
type Certificate struct {
	// Certificate is the user certificate in authorized_keys format, to be
	// saved as the key's -cert.pub file.
	Certificate string    `json:"certificate"`
	ValidBefore time.Time `json:"valid_before"`
	Principals  []string  `json:"principals"`
	// KnownHosts are @cert-authority lines for the bastion's host CA.
	KnownHosts []string `json:"known_hosts"`
	Bastion    string   `json:"bastion"`
}

// DBTokenBody is the body of POST /api/v1/db/token.
type DBTokenBody struct {
	Target   string `json:"target"`
	Database string `json:"database,omitempty"`
}

// DBToken answers POST /api/v1/db/token: the token and how to connect.
type DBToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Amendment string    `json:"amendment"`
	Host      string    `json:"host"`
	Port      int       `json:"port"`
	User      string    `json:"user"`
	DBName    string    `json:"dbname"`
	SSLMode   string    `json:"sslmode"`
}

// Targets answers GET /api/v1/targets: what the caller may request, and
// where the proxies listen.
type Targets struct {
	Targets  []TargetView `json:"targets"`
	Bastion  string       `json:"ssh_bastion,omitempty"`
	Postgres string       `json:"postgres_endpoint,omitempty"`
}

// TargetView is one target a person may request.
type TargetView struct {
	Name      string               `json:"name"`
	Kind      amendment.TargetKind `json:"kind"`
	Logins    []string             `json:"logins,omitempty"`
	Roles     []string             `json:"roles,omitempty"`
	Databases []string             `json:"databases,omitempty"`
	Rules     []string             `json:"rules"`
}

func (h *Handler) targets(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	c := h.amendments.Contract()
	out := Targets{Targets: []TargetView{}}
	if h.ssh != nil {
		out.Bastion = h.ssh.Bastion
	}
	if h.db != nil {
		out.Postgres = h.db.Endpoint
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range c.Targets {
			if !yield(n) {
				return
			}
		}
	}) {
		t := c.Targets[name]
		v := TargetView{Name: name, Kind: t.Kind, Logins: t.Logins, Roles: t.Roles, Databases: t.Databases}
		for _, rule := range c.Rules {
			if rule.Matches(who, name) {
				v.Rules = append(v.Rules, rule.Name)
			}
		}
		if len(v.Rules) > 0 || c.CanReadAll(who) {
			out.Targets = append(out.Targets, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sshCertificate mints a user certificate for the caller's key, valid until
// the last of their active SSH amendments ends, and only while they hold one.
// What it lets them reach is decided again, live, on every connection.
func (h *Handler) sshCertificate(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	if h.ssh == nil {
		return errorf(http.StatusNotFound, CodeNotFound, "this jitproxy serves no SSH bastion")
	}
	var body CertificateBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(body.PublicKey))
	if err != nil {
		return badRequest("public_key is not an SSH public key in authorized_keys format: %v", err)
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return badRequest("public_key is a certificate; send the plain public key")
	}
	until, err := h.amendments.LatestExpiry(r.Context(), who.Key(), amendment.KindSSH)
	if err != nil {
		return err
	}
	if until.IsZero() {
		return errorf(http.StatusForbidden, CodeForbidden, "no active SSH amendment, so no certificate: request one with jitproxy request TARGET --login LOGIN --for 1h --reason ..., then run jitproxy certs")
	}
	principals := []string{who.Key()}
	if local, _, ok := strings.Cut(who.Key(), "@"); ok && local != "" {
		principals = append(principals, local)
	}
	cert, err := h.ssh.Authority.SignUser(pub, certs.UserCert{
		KeyID:          who.Key(),
		Principals:     principals,
		ValidBefore:    until,
		PTY:            true,
		PortForwarding: true, // the bastion decides per amendment; the cert only names the person
	})
	if err != nil {
		return err
	}
	h.appendAudit(r.Context(), audit.TypeCertMinted, who.Key(), map[string]any{
		"serial": cert.Serial, "valid_before": until, "principals": principals,
		"key_fingerprint": ssh.FingerprintSHA256(pub),
	})
	writeJSON(w, http.StatusOK, Certificate{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		ValidBefore: until.UTC(),
		Principals:  principals,
		KnownHosts:  h.ssh.Authority.KnownHosts("*"),
		Bastion:     h.ssh.Bastion,
	})
	return nil
}

// dbToken issues a database token for the caller's active PostgreSQL
// amendment on the target.
func (h *Handler) dbToken(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	if h.db == nil {
		return errorf(http.StatusNotFound, CodeNotFound, "this jitproxy serves no PostgreSQL endpoint")
	}
	var body DBTokenBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.Target == "" {
		return badRequest("say which target the token is for")
	}
	hint := "no active amendment for a database role on " + body.Target + ": run jitproxy request " + body.Target + " --role ROLE --for 1h --reason ..."
	a, err := h.amendments.ActiveFor(r.Context(), who.Key(), body.Target, func(res amendment.Resource) bool {
		return res.Kind == amendment.KindPostgres && (body.Database == "" || res.Database == "" || res.Database == body.Database)
	}, hint)
	if err != nil {
		return err
	}
	ttl := h.db.TTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	expires := h.now().Add(ttl)
	if a.ExpiresAt.Before(expires) {
		expires = a.ExpiresAt // a token never outlives its amendment
	}
	tok, err := h.db.Tokens.Issue(certs.Token{Person: who.Key(), Amendment: a.ID, Target: body.Target, ExpiresAt: expires})
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(tok))
	h.appendAudit(r.Context(), audit.TypeDBTokenIssued, who.Key(), map[string]any{
		"amendment": a.ID, "target": body.Target, "expires_at": expires,
		"token_sha256": hex.EncodeToString(sum[:8]), // enough to correlate, never the token
	})
	host, portStr, _ := net.SplitHostPort(h.db.Endpoint)
	port, _ := strconv.Atoi(portStr)
	db := body.Target
	if d := cmp.Or(body.Database, a.Resource.Database); d != "" {
		db += "/" + d
	}
	writeJSON(w, http.StatusOK, DBToken{Token: tok, ExpiresAt: expires.UTC(), Amendment: a.ID, Host: host, Port: port, User: who.Key(), DBName: db, SSLMode: "require"})
	return nil
}

// AuditLog appends audit rows for events that change no amendment.
type AuditLog interface {
	AppendAudit(ctx context.Context, e audit.Event) (audit.Event, error)
}

// appendAudit writes a row for an action that changes no amendment. The
// action already happened, so a failure is logged, not returned.
func (h *Handler) appendAudit(ctx context.Context, typ, actor string, data any) {
	if h.auditLog == nil {
		return
	}
	e, err := audit.NewEvent(h.now(), typ, actor, data)
	if err == nil {
		_, err = h.auditLog.AppendAudit(ctx, e)
	}
	if err != nil {
		h.log.Error().Err(err).Str("type", typ).Msg("writing an audit row failed")
	}
}
