package amendment

import (
	"errors"
	"fmt"
)

// Code is a stable error class; the API renders it as its JSON "code".
type Code string

// The codes.
const (
	CodeNotFound        Code = "not_found"
	CodeForbidden       Code = "forbidden"
	CodeInvalidState    Code = "invalid_state"
	CodePolicyViolation Code = "policy_violation"
	CodeBadRequest      Code = "bad_request"
	CodeConflict        Code = "conflict"
)

// Error is what a person sees when the domain refuses something: a stable
// code and one sentence that says what was wrong and what to do.
type Error struct {
	Code    Code
	Message string
	// Rule names the contract rule involved, if any.
	Rule string
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotFound) and friends match on the code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is: they match any *Error with the same code.
var (
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrForbidden       = &Error{Code: CodeForbidden}
	ErrInvalidState    = &Error{Code: CodeInvalidState}
	ErrPolicyViolation = &Error{Code: CodePolicyViolation}
	ErrBadRequest      = &Error{Code: CodeBadRequest}
	ErrConflict        = &Error{Code: CodeConflict}
)

// CodeOf returns the code of err, or "" for errors that are not the
// domain's own (an internal failure).
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
