package devidp

import (
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// maxFormBytes bounds a posted sign-in form.
const maxFormBytes = 16 << 10

// wrongCredentials is what a failed sign-in shows: it does not say whether
// the username exists.
const wrongCredentials = "Wrong username or password. Try again."

// serveLoginForm shows the sign-in form for the authorization request named
// by the authRequestID query parameter (the op redirects here).
func (p *Provider) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	if _, ok := p.store.pendingRequest(id); !ok {
		p.expiredLogin(w)
		return
	}
	p.render(w, http.StatusOK, "login", loginPage{Action: p.prefix + loginPath, ID: id})
}

// submitLoginForm checks the posted username and password. On success it
// hands the request back to the op, which redirects to the client with a
// code; on failure it shows the form again with a message; "cancel" sends
// access_denied to the client.
func (p *Provider) submitLoginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse the sign-in form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("authRequestID")
	req, ok := p.store.pendingRequest(id)
	if !ok {
		p.expiredLogin(w)
		return
	}
	if r.PostForm.Get("action") == "cancel" {
		p.store.DeleteAuthRequest(r.Context(), id)
		p.log.Info().Str("client", req.clientID).Msg("sign-in cancelled")
		op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("the user cancelled the sign-in"), p.op)
		return
	}
	username := r.PostForm.Get("username")
	if _, ok := p.store.checkPassword(username, r.PostForm.Get("password")); !ok {
		p.log.Info().Str("username", username).Str("client", req.clientID).Msg("sign-in refused: wrong username or password")
		p.render(w, http.StatusUnauthorized, "login", loginPage{
			Action: p.prefix + loginPath, ID: id, Username: username, Error: wrongCredentials,
		})
		return
	}
	if err := p.store.completeLogin(id, username); err != nil {
		p.expiredLogin(w)
		return
	}
	p.log.Info().Str("username", username).Str("client", req.clientID).Msg("signed in")
	http.Redirect(w, r, p.callbackURL(id), http.StatusSeeOther)
}

func (p *Provider) expiredLogin(w http.ResponseWriter) {
	p.render(w, http.StatusBadRequest, "message", messagePage{
		Title:   "Sign-in expired",
		Message: "This sign-in request is unknown, finished or expired. Start the login again from jitproxy.",
	})
}
