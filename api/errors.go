package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/jitproxy/jitproxy/amendment"
)

// Code is the stable class of an API error: clients branch on it, people
// read the message.
type Code string

// The codes, with the HTTP status each comes with. The amendment service's
// own codes keep their names.
const (
	CodeBadRequest           Code = "bad_request"            // 400
	CodeUnauthenticated      Code = "unauthenticated"        // 401
	CodeForbidden            Code = "forbidden"              // 403
	CodeNotFound             Code = "not_found"              // 404
	CodeMethodNotAllowed     Code = "method_not_allowed"     // 405
	CodeInvalidState         Code = "invalid_state"          // 409
	CodeConflict             Code = "conflict"               // 409
	CodePayloadTooLarge      Code = "payload_too_large"      // 413
	CodeUnsupportedMediaType Code = "unsupported_media_type" // 415
	CodePolicyViolation      Code = "policy_violation"       // 422
	CodeInternal             Code = "internal"               // 500
	CodeNotReady             Code = "not_ready"              // 503
)

// domainStatus is the HTTP status of each amendment.Code. A policy
// violation is 422, not 403: the caller may act, but not on what this
// request asks for, and asking for something else can succeed; 403 is kept
// for "you may not do this at all".
var domainStatus = map[amendment.Code]int{
	amendment.CodeBadRequest:      http.StatusBadRequest,
	amendment.CodeForbidden:       http.StatusForbidden,
	amendment.CodeNotFound:        http.StatusNotFound,
	amendment.CodeInvalidState:    http.StatusConflict,
	amendment.CodeConflict:        http.StatusConflict,
	amendment.CodePolicyViolation: http.StatusUnprocessableEntity,
}

// Error is what a client sees when a request fails. It is sent as
// {"error": {"code": ..., "message": ...}} with Status as the HTTP status.
// The message is one sentence that says what was wrong and what to do.
type Error struct {
	Status  int    `json:"-"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// ErrorBody is the JSON body of every failed response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func errorf(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
}

// internalError is the whole answer to an internal failure: the detail is
// in the log under the request ID, never in the response.
func internalError(requestID string) *Error {
	return errorf(http.StatusInternalServerError, CodeInternal,
		"something went wrong in jitproxy; if it keeps happening, give your jitproxy admin the request id %s", requestID)
}

// fail renders err: an *Error as is, a refusal of the amendment service with
// its code and message, anything else as an internal error whose detail is
// only logged.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ri := info(r)
	var ae *Error
	var de *amendment.Error
	switch {
	case errors.As(err, &ae):
		writeError(w, ae)
	case errors.As(err, &de):
		status, ok := domainStatus[de.Code]
		if !ok {
			ri.log.Warn().Str("code", string(de.Code)).Msg("amendment error code with no HTTP status; sending 400")
			status = http.StatusBadRequest
		}
		msg := de.Message
		if msg == "" { // a bare sentinel from the store, wrapped
			msg = defaultMessage(de.Code)
		}
		writeError(w, &Error{Status: status, Code: Code(de.Code), Message: msg})
	default:
		if r.Context().Err() != nil {
			ri.log.Info().Err(err).Msg("client went away")
		} else {
			ri.log.Error().Err(err).Msg("internal error")
		}
		writeError(w, internalError(ri.id))
	}
}

func defaultMessage(c amendment.Code) string {
	switch c {
	case amendment.CodeNotFound:
		return "no such amendment that you may see: check the ID with jitproxy list"
	case amendment.CodeConflict:
		return "the amendment changed while you acted on it; try again"
	}
	return "the request was refused (" + string(c) + ")"
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, ErrorBody{Error: e})
}
