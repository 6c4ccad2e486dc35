// Package api serves jitproxy's HTTP JSON API: amendments, identity, audit,
// health. It authenticates every request through an Authenticator and leaves
// every decision to the amendment service; it does not verify tokens, keep
// state or decide policy itself.
package api

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// defaultMaxBodyBytes bounds request bodies when Config.MaxBodyBytes is 0.
const defaultMaxBodyBytes = 64 << 10

// Authenticator says who sent a request. The auth package implements it with
// OIDC-backed session tokens. Its error is shown to the caller as a 401, so
// it must be a sentence a person can act on ("not logged in: run jitproxy
// login") and must not contain the credential.
type Authenticator interface {
	Authenticate(r *http.Request) (amendment.Identity, error)
}

// AuditTrail is the subset of store.Store that api reads the audit trail
// through.
type AuditTrail interface {
	// AuditEvents yields stored audit events with seq > after, in seq order.
	AuditEvents(ctx context.Context, after int64) iter.Seq2[audit.Event, error]
}

// Config configures a Handler.
type Config struct {
	// Amendments runs every amendment action and decides who may do what.
	Amendments *amendment.Service
	// Audit is where the audit trail is read from (the store).
	Audit AuditTrail
	// Ready reports whether the server can serve (the store's Ready); its
	// error is the reason /readyz gives.
	Ready func(ctx context.Context) error
	// Authenticator identifies the caller of every /api/ request.
	Authenticator Authenticator
	// Logger receives one line per request and the detail of every internal
	// error; the zero Logger logs nothing.
	Logger zerolog.Logger
	// MaxBodyBytes bounds request bodies; 0 means 64 KiB.
	MaxBodyBytes int64
	// Now is the clock for relative start times and time left; nil means
	// time.Now.
	Now func() time.Time
	// SSH mints SSH user certificates (POST /api/v1/ssh/certificate); nil
	// means this server has no SSH bastion.
	SSH *SSHCredentials
	// DB issues PostgreSQL tokens (POST /api/v1/db/token); nil means this
	// server has no PostgreSQL endpoint.
	DB *DBCredentials
	// AuditLog records what the API hands out (certificates, tokens); nil
	// means nothing is recorded, which only tests should do.
	AuditLog AuditLog
	// Extra mounts more handlers on the same mux under ServeMux patterns
	// ("/auth/", "/dev-idp/", "GET /metrics"). They get request IDs, the
	// request log line, panic recovery and nosniff, but no authentication
	// and no JSON error rendering: they answer for themselves. nil means
	// none.
	Extra map[string]http.Handler
}

// Handler serves the API; mount it at the server's root. Its routes:
//
//	GET  /healthz                             liveness, no identity needed
//	GET  /readyz                              the store answers, no identity needed
//	POST /api/v1/amendments                   RequestBody → 201 Amendment
//	GET  /api/v1/amendments                   ?state=&requester=me&target=&limit= → AmendmentList
//	GET  /api/v1/amendments/{id}              → Amendment
//	POST /api/v1/amendments/{id}/approve      ApproveBody → Amendment
//	POST /api/v1/amendments/{id}/deny         ReasonBody → Amendment
//	POST /api/v1/amendments/{id}/revoke       ReasonBody → Amendment
//	POST /api/v1/amendments/{id}/extend       ExtendBody → Amendment
//	POST /api/v1/amendments/{id}/withdraw     ReasonBody → Amendment
//	GET  /api/v1/whoami                       → Whoami
//	GET  /api/v1/audit                        ?after=N → audit events as JSON lines (auditors, admins)
//	GET  /api/v1/audit/verify                 → VerifyResult (auditors, admins)
//
// Every failure is an ErrorBody with an Error's status.
type Handler struct {
	amendments *amendment.Service
	audit      AuditTrail
	ready      func(context.Context) error
	auth       Authenticator
	log        zerolog.Logger
	maxBody    int64
	now        func() time.Time
	mux        *http.ServeMux
	ssh        *SSHCredentials
	db         *DBCredentials
	auditLog   AuditLog
}

// New validates cfg and returns a Handler with every route registered.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Amendments == nil:
		return nil, errors.New("api: Config.Amendments is nil")
	case cfg.Audit == nil:
		return nil, errors.New("api: Config.Audit is nil")
	case cfg.Ready == nil:
		return nil, errors.New("api: Config.Ready is nil")
	case cfg.Authenticator == nil:
		return nil, errors.New("api: Config.Authenticator is nil")
	case cfg.MaxBodyBytes < 0:
		return nil, fmt.Errorf("api: Config.MaxBodyBytes is %d; use 0 for the default of 64 KiB", cfg.MaxBodyBytes)
	}
	h := &Handler{
		amendments: cfg.Amendments,
		audit:      cfg.Audit,
		ready:      cfg.Ready,
		auth:       cfg.Authenticator,
		log:        cfg.Logger,
		maxBody:    cfg.MaxBodyBytes,
		now:        cfg.Now,
		mux:        http.NewServeMux(),
		ssh:        cfg.SSH,
		db:         cfg.DB,
		auditLog:   cfg.AuditLog,
	}
	if h.maxBody == 0 {
		h.maxBody = defaultMaxBodyBytes
	}
	if h.now == nil {
		h.now = time.Now
	}

	h.mux.Handle("GET /healthz", plain(h.healthz))
	h.mux.Handle("GET /readyz", plain(h.readyz))

	h.mux.Handle("POST /api/v1/amendments", h.authed(h.createAmendment))
	h.mux.Handle("GET /api/v1/amendments", h.authed(h.listAmendments))
	h.mux.Handle("GET /api/v1/amendments/{id}", h.authed(h.getAmendment))
	h.mux.Handle("POST /api/v1/amendments/{id}/approve", h.authed(h.approve))
	h.mux.Handle("POST /api/v1/amendments/{id}/deny", h.authed(h.deny))
	h.mux.Handle("POST /api/v1/amendments/{id}/revoke", h.authed(h.revoke))
	h.mux.Handle("POST /api/v1/amendments/{id}/extend", h.authed(h.extend))
	h.mux.Handle("POST /api/v1/amendments/{id}/withdraw", h.authed(h.withdraw))
	h.mux.Handle("GET /api/v1/whoami", h.authed(h.whoami))
	h.mux.Handle("GET /api/v1/audit", h.authed(h.auditStream))
	h.mux.Handle("GET /api/v1/audit/verify", h.authed(h.auditVerify))
	h.mux.Handle("GET /api/v1/targets", h.authed(h.targets))
	h.mux.Handle("POST /api/v1/ssh/certificate", h.authed(h.sshCertificate))
	h.mux.Handle("POST /api/v1/db/token", h.authed(h.dbToken))

	for pattern, handler := range cfg.Extra {
		if handler == nil {
			return nil, fmt.Errorf("api: Config.Extra[%q] is nil", pattern)
		}
		if err := h.mount(pattern, handler); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// mount registers an extra pattern, turning ServeMux's panic on a malformed
// or conflicting pattern into an error.
func (h *Handler) mount(pattern string, handler http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("api: Config.Extra[%q]: %v", pattern, p)
		}
	}()
	h.mux.Handle(pattern, handler)
	return nil
}

// route dispatches r. ServeMux answers unknown paths and methods in plain
// text; those are answered here in JSON instead, with the same status (and,
// for 405, the same Allow header).
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if fallback, pattern := h.mux.Handler(r); pattern == "" {
		apiHeaders(w)
		rec := &statusOnly{header: http.Header{}}
		fallback.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			h.fail(w, r, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s: use %s", r.Method, r.URL.Path, rec.header.Get("Allow")))
			return
		}
		h.fail(w, r, errorf(http.StatusNotFound, CodeNotFound, "no such endpoint %s %s", r.Method, r.URL.Path))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// statusOnly records the status and headers ServeMux's fallback handlers
// write, and drops their plain-text body.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *statusOnly) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}

// handlerFunc is an authenticated API endpoint. A returned error is
// rendered by fail; a handler that returns nil has written its response.
type handlerFunc func(w http.ResponseWriter, r *http.Request, who amendment.Identity) error

// authed authenticates the caller, then runs f and renders its error.
func (h *Handler) authed(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiHeaders(w)
		who, err := h.auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitproxy"`)
			h.fail(w, r, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: err.Error()})
			return
		}
		if who.Key() == "" {
			// Every rule, approval and audit row is keyed by email.
			h.fail(w, r, errorf(http.StatusForbidden, CodeForbidden, "your identity has no email; ask your identity provider admin to release the email claim"))
			return
		}
		info(r).setIdentity(who.Key())
		if err := f(w, r, who); err != nil {
			h.fail(w, r, err)
		}
	})
}

// plain wraps an unauthenticated endpoint of our own.
func plain(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiHeaders(w)
		f(w, r)
	})
}

// apiHeaders are the headers of every response of our own: nothing in it
// may be cached, framed, or run as a script.
func apiHeaders(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
}
