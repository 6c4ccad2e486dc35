package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Device login bounds.
const (
	defaultDeviceInterval = 5 * time.Second
	defaultDeviceLifetime = 10 * time.Minute
	maxDeviceLifetime     = 30 * time.Minute
	// slowDownIncrement is what RFC 8628 adds to the interval on slow_down.
	slowDownIncrement = 5 * time.Second
)

// deviceState is where a device login stands.
type deviceState int

const (
	devicePending deviceState = iota
	deviceDone
	deviceDenied
	deviceExpired
	deviceFailed
)

// deviceTxn is one device login between POST /auth/device and the poll
// that collects its result. The broker polls the IdP in a goroutine
// (pollDevice) and records the outcome here; the CLI polls the broker.
type deviceTxn struct {
	state    deviceState
	identity Identity // when deviceDone
	failure  error    // when deviceFailed
	interval time.Duration
	lastPoll time.Time
}

// handleDeviceStart starts the device authorization grant with the IdP.
func (b *Broker) handleDeviceStart(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), idpTimeout)
	defer cancel()
	oc, err := b.verifier.oauth2Config(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	if oc.Endpoint.DeviceAuthURL == "" {
		writeError(w, fmt.Errorf("auth: device login: %w", ErrDeviceUnsupported))
		return
	}
	da, err := oc.DeviceAuth(b.verifier.clientContext(ctx))
	if err != nil {
		b.log.Warn().Str("reason", describeOAuthError(err)).Msg("device login: the identity provider refused to start")
		writeError(w, fmt.Errorf("auth: device login: %w: %s", ErrIdPUnavailable, describeOAuthError(err)))
		return
	}
	lifetime := defaultDeviceLifetime
	if !da.Expiry.IsZero() {
		lifetime = min(time.Until(da.Expiry), maxDeviceLifetime) // x/oauth2 reads expires_in with the real clock
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = defaultDeviceInterval
	}
	handle := randomString()
	expiresAt := b.now().Add(lifetime)
	if err := b.devices.add(handle, deviceTxn{interval: interval}, expiresAt); err != nil {
		writeError(w, fmt.Errorf("auth: device login: %w", err))
		return
	}
	b.wg.Add(1)
	go b.pollDevice(handle, oc, da)
	b.log.Info().Msg("device login started")
	writeJSON(w, http.StatusOK, DeviceStart{
		Handle:                  handle,
		UserCode:                da.UserCode,
		VerificationURI:         da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete,
		Interval:                int(interval / time.Second),
		ExpiresAt:               expiresAt,
	})
}

// pollDevice waits for the IdP to answer the device login (x/oauth2 polls
// at the IdP's interval, slowing down when told), verifies the ID token and
// records the outcome under handle. It ends when the IdP answers, the device
// code expires, or the broker closes.
func (b *Broker) pollDevice(handle string, oc *oauth2.Config, da *oauth2.DeviceAuthResponse) {
	defer b.wg.Done()
	ctx := b.verifier.clientContext(b.ctx)
	tok, err := oc.DeviceAccessToken(ctx, da)
	var (
		state   = deviceDone
		id      Identity
		failure error
	)
	var re *oauth2.RetrieveError
	switch {
	case b.ctx.Err() != nil:
		return // closing
	case errors.As(err, &re) && re.ErrorCode == "access_denied":
		state = deviceDenied
	case errors.As(err, &re) && re.ErrorCode == "expired_token", errors.Is(err, context.DeadlineExceeded):
		state = deviceExpired
	case err != nil:
		state, failure = deviceFailed, fmt.Errorf("auth: device login: %w: %s", ErrLoginFailed, describeOAuthError(err))
	default:
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			state, failure = deviceFailed, fmt.Errorf("auth: device login: %w: the identity provider returned no ID token", ErrLoginFailed)
			break
		}
		vctx, cancel := context.WithTimeout(b.ctx, idpTimeout)
		id, err = b.verifier.Verify(vctx, raw, "")
		cancel()
		if err != nil {
			state, failure = deviceFailed, err
		}
	}
	if failure != nil {
		b.log.Warn().Err(failure).Msg("device login failed")
	}
	b.devices.update(handle, func(d *deviceTxn) bool {
		d.state, d.identity, d.failure = state, id, failure
		return false
	})
}

// handleDevicePoll answers a CLI's poll: pending, the session token once,
// or why not. Polls faster than half the interval get slow_down.
func (b *Broker) handleDevicePoll(w http.ResponseWriter, r *http.Request) {
	var req devicePollRequest
	if err := readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	var (
		txn  deviceTxn
		slow bool
	)
	found := b.devices.update(req.Handle, func(d *deviceTxn) bool {
		now := b.now()
		if !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval/2 {
			slow = true
			d.interval += slowDownIncrement
		}
		d.lastPoll = now
		txn = *d
		return !slow && d.state != devicePending // an outcome is handed out once
	})
	switch {
	case !found:
		writeError(w, fmt.Errorf("auth: device login: %w", ErrDeviceExpired))
	case slow:
		writeError(w, fmt.Errorf("auth: device login: %w: poll every %s", errSlowDown, txn.interval))
	case txn.state == devicePending:
		writeJSON(w, http.StatusOK, devicePollResponse{Status: deviceStatusPending})
	case txn.state == deviceDenied:
		writeError(w, fmt.Errorf("auth: device login: %w", ErrDeviceDenied))
	case txn.state == deviceExpired:
		writeError(w, fmt.Errorf("auth: device login: %w", ErrDeviceExpired))
	case txn.state == deviceFailed:
		writeError(w, txn.failure)
	default:
		resp, err := b.startSession(r.Context(), txn.identity, "device")
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, devicePollResponse{Status: deviceStatusComplete, TokenResponse: &resp})
	}
}
