package auth

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"time"
)

// maxJSONBytes bounds a JSON request or answer body on the /auth routes.
const maxJSONBytes = 64 << 10

// TokenResponse answers POST /auth/token and a finished POST /auth/device/token.
type TokenResponse struct {
	Token     string    `json:"token"` // the session token, "jpt_…": a secret
	ExpiresAt time.Time `json:"expires_at"`
	Identity  Identity  `json:"identity"`
}

// tokenRequest is the body of POST /auth/token.
type tokenRequest struct {
	Code         string `json:"code"`
	CodeVerifier string `json:"code_verifier"`
}

// DeviceStart answers POST /auth/device: what to show the person, and the
// handle to poll POST /auth/device/token with.
type DeviceStart struct {
	Handle                  string    `json:"handle"`
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	Interval                int       `json:"interval"` // seconds between polls
	ExpiresAt               time.Time `json:"expires_at"`
}

// devicePollRequest is the body of POST /auth/device/token.
type devicePollRequest struct {
	Handle string `json:"handle"`
}

// Device poll statuses.
const (
	deviceStatusPending  = "pending"
	deviceStatusComplete = "complete"
)

// devicePollResponse answers POST /auth/device/token: {"status":"pending"},
// or "complete" with the TokenResponse fields.
type devicePollResponse struct {
	Status string `json:"status"`
	*TokenResponse
}

// errorBody is every JSON error answer of the /auth routes.
type errorBody struct {
	Error   string `json:"error"`   // stable code
	Message string `json:"message"` // one line for a person
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with err's status and code; the message is err's text,
// which never holds a secret.
func writeError(w http.ResponseWriter, err error) {
	status, code := wireCode(err)
	writeJSON(w, status, errorBody{Error: code, Message: err.Error()})
}

// readJSON decodes a bounded JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("auth: %w: body must be JSON: %v", ErrInvalidRequest, err)
	}
	return nil
}

// decodeAnswer reads a JSON answer from the jitproxy server into v, or its
// JSON error into a *ServerError.
func decodeAnswer(resp *http.Response, v any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBytes))
	if err != nil {
		return fmt.Errorf("auth: read answer from %s: %w", resp.Request.URL.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return &ServerError{Status: resp.StatusCode, Code: "server_error", Message: fmt.Sprintf("HTTP %s from %s", resp.Status, resp.Request.URL.Redacted())}
		}
		return &ServerError{Status: resp.StatusCode, Code: e.Error, Message: e.Message}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("auth: answer from %s is not the expected JSON: %w", resp.Request.URL.Redacted(), err)
	}
	return nil
}

// pageHTML is the one plain page the broker and the CLI's loopback listener
// show a person: a title and one message.
const pageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s · jitproxy</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}</style>
</head><body><h1>%s</h1><p id="message">%s</p></body></html>
`

func writePage(w http.ResponseWriter, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	t, m := html.EscapeString(title), html.EscapeString(message)
	fmt.Fprintf(w, pageHTML, t, t, m)
}
