package onegate

import (
	"errors"
	"strconv"
	"strings"
)

// APIError is a non-2xx answer. Message is the server's body as sent
// (OneGate answers plain text such as "Not authorized").
type APIError struct {
	Method  string // HTTP method of the request
	Path    string // route relative to the endpoint, e.g. "/vm"
	Status  int
	Message string
}

func (e *APIError) Error() string {
	msg := strings.Join(strings.Fields(e.Message), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	s := "onegate: " + e.Method + " " + e.Path + ": " + strconv.Itoa(e.Status)
	if msg != "" {
		s += " " + msg
	}
	return s
}

// Error is a failure that got no HTTP answer (connection, timeout) or a
// request that could not be built or decoded.
type Error struct {
	Method string
	Path   string
	Err    error
	// transport marks failures that may pass when tried again.
	transport bool
}

func (e *Error) Error() string { return "onegate: " + e.Method + " " + e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Transport reports whether the request got no answer at all (refused,
// unreachable, timed out, cut off).
func (e *Error) Transport() bool { return e.transport }

// StatusOf returns the HTTP status carried by err, or 0.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// retryable: no answer, or a 5xx. A 4xx is the server's final word for
// this request (bad token, refused attribute, not in a service).
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var e *Error
	return errors.As(err, &e) && e.transport
}
