package devidp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// deviceEntry is one device authorization (RFC 8628) between the device
// authorization request and the token the device redeems.
type deviceEntry struct {
	userCode string
	state    op.DeviceAuthorizationState
}

// StoreDeviceAuthorization records a new device authorization.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if _, ok := s.clients[clientID]; !ok {
		return fmt.Errorf("devidp: unknown client %q", clientID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	if _, dup := s.userCodes[userCode]; dup {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceEntry{
		userCode: userCode,
		state: op.DeviceAuthorizationState{
			ClientID: clientID,
			Scopes:   slices.Clone(scopes),
			Expires:  expires,
		},
	}
	s.userCodes[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState reports a device authorization's state to the
// polling device. A completed one is handed out once, then forgotten, so its
// device code cannot be redeemed twice.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, fmt.Errorf("device code: %w", errNotFound)
	}
	state := d.state
	state.Scopes = slices.Clone(d.state.Scopes)
	state.AMR = slices.Clone(d.state.AMR)
	if state.Done || state.Denied {
		delete(s.userCodes, d.userCode)
		delete(s.devices, deviceCode)
	}
	return &state, nil
}

var errDeviceUsed = errors.New("devidp: device code already answered")

// decideDevice approves (as username) or denies the pending device
// authorization with userCode.
func (s *storage) decideDevice(userCode, username string, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.userCodes[userCode]]
	if !ok || s.now().After(d.state.Expires) {
		return fmt.Errorf("user code: %w", errNotFound)
	}
	if d.state.Done || d.state.Denied {
		return errDeviceUsed
	}
	if !approve {
		d.state.Denied = true
		return nil
	}
	d.state.Done = true
	d.state.Subject = username
	d.state.AuthTime = s.now()
	d.state.AMR = amr(true)
	return nil
}

// pendingDevice reports whether userCode names a device authorization still waiting for a person.
func (s *storage) pendingDevice(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.userCodes[userCode]]
	return ok && !d.state.Done && !d.state.Denied && !s.now().After(d.state.Expires)
}

// normalizeUserCode accepts a user code typed with any case, spaces or
// dashes and returns it in the XXXX-XXXX form the op issues.
func normalizeUserCode(in string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	code := b.String()
	interval := op.UserCodeBase20.DashInterval
	if len(code) != op.UserCodeBase20.CharAmount {
		return code
	}
	var out strings.Builder
	for i := 0; i < len(code); i += interval {
		if i > 0 {
			out.WriteByte('-')
		}
		out.WriteString(code[i:min(i+interval, len(code))])
	}
	return out.String()
}

// serveDeviceForm shows the device page, with the code filled in when the
// verification_uri_complete link carried it.
func (p *Provider) serveDeviceForm(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "device", devicePage{
		Action:   p.prefix + devicePath,
		UserCode: normalizeUserCode(r.URL.Query().Get("user_code")),
	})
}

// submitDeviceForm checks the user code and credentials, then approves or
// denies the device. Mistakes show the form again with a message.
func (p *Provider) submitDeviceForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse the device form", http.StatusBadRequest)
		return
	}
	page := devicePage{
		Action:   p.prefix + devicePath,
		UserCode: normalizeUserCode(r.PostForm.Get("user_code")),
		Username: r.PostForm.Get("username"),
	}
	if !p.store.pendingDevice(page.UserCode) {
		page.Error = "That code is unknown, already used or expired. Check the code shown in your terminal, or start the login again."
		p.render(w, http.StatusBadRequest, "device", page)
		return
	}
	if _, ok := p.store.checkPassword(page.Username, r.PostForm.Get("password")); !ok {
		p.log.Info().Str("username", page.Username).Msg("device sign-in refused: wrong username or password")
		page.Error = wrongCredentials
		p.render(w, http.StatusUnauthorized, "device", page)
		return
	}
	approve := r.PostForm.Get("action") != "deny"
	if err := p.store.decideDevice(page.UserCode, page.Username, approve); err != nil {
		page.Error = "That code is unknown, already used or expired. Start the login again."
		p.render(w, http.StatusBadRequest, "device", page)
		return
	}
	if !approve {
		p.log.Info().Str("username", page.Username).Msg("device sign-in denied")
		p.render(w, http.StatusOK, "message", messagePage{
			Title:   "Device denied",
			Message: "The device was not signed in. You can close this page.",
		})
		return
	}
	p.log.Info().Str("username", page.Username).Msg("device signed in")
	p.render(w, http.StatusOK, "message", messagePage{
		Title:   "Device signed in",
		Message: "Signed in as " + page.Username + ". You can return to your terminal and close this page.",
	})
}
