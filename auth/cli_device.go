package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// LoginDevice logs in with the device authorization grant, for machines
// without a browser: it asks the proxy to start a device login, prints the
// verification URI and user code, and polls the proxy at the interval it
// gave, adding 5s whenever told to slow down, until the person has signed in
// elsewhere, denied it, or the code expired. OpenBrowser, when set, is
// called with the verification URI (with the code when the IdP offers one).
func LoginDevice(ctx context.Context, cfg LoginConfig) (TokenResponse, error) {
	if err := cfg.validate(); err != nil {
		return TokenResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var start DeviceStart
	if err := postJSON(ctx, cfg, "/auth/device", struct{}{}, &start); err != nil {
		return TokenResponse{}, err
	}
	fmt.Fprintf(cfg.Out, "To log in, open this URL in a browser on any device:\n%s\nand enter the code: %s\n", start.VerificationURI, start.UserCode)
	browse := start.VerificationURI
	if start.VerificationURIComplete != "" {
		browse = start.VerificationURIComplete
		fmt.Fprintf(cfg.Out, "Or open this URL, which carries the code:\n%s\n", start.VerificationURIComplete)
	}
	if cfg.OpenBrowser != nil {
		if err := cfg.OpenBrowser(browse); err != nil {
			fmt.Fprintf(cfg.Out, "Could not open a browser (%v).\n", err)
		}
	}
	fmt.Fprintln(cfg.Out, "Waiting for the login to finish...")

	interval := time.Duration(start.Interval) * time.Second
	if interval <= 0 {
		interval = defaultDeviceInterval
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return TokenResponse{}, fmt.Errorf("auth: device login: %w", ErrLoginTimeout)
			}
			return TokenResponse{}, fmt.Errorf("auth: device login: %w", ctx.Err())
		case <-timer.C:
		}
		var poll devicePollResponse
		err := postJSON(ctx, cfg, "/auth/device/token", devicePollRequest{Handle: start.Handle}, &poll)
		switch {
		case errors.Is(err, errSlowDown):
			interval += slowDownIncrement
		case err != nil:
			return TokenResponse{}, err
		case poll.Status == deviceStatusComplete && poll.TokenResponse != nil:
			return *poll.TokenResponse, nil
		case poll.Status != deviceStatusPending:
			return TokenResponse{}, fmt.Errorf("auth: device login: unexpected status %q from the proxy", poll.Status)
		}
		timer.Reset(interval)
	}
}
