package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error codes in the "code" field of error responses.
const (
	CodeBadRequest       = "bad_request"
	CodeUnknownField     = "unknown_field"
	CodeBadQuery         = "bad_query"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeForbidden        = "forbidden"
	CodeTooLarge         = "body_too_large"
	CodeUnsupportedType  = "unsupported_media_type"
	CodeReloadFailed     = "reload_failed"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	// Proxy codes are Azure Sphere's netconfig error names.
	CodeProxyNotFound = "ProxyClientConfigurationNotFound"
)

// Error is an API error: the response body of every non-2xx answer, and
// what the client returns for one.
type Error struct {
	// Status is the HTTP status; Azure Sphere's error bodies carry an
	// integer in "error" too.
	Status  int    `json:"error"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Details lists each problem when there are several, such as every
	// manifest error of a failed reload.
	Details []string `json:"details,omitempty"`
}

func (e *Error) Error() string {
	s := e.Message
	if s == "" {
		s = http.StatusText(e.Status)
	}
	if len(e.Details) > 0 {
		s += ":\n  " + strings.Join(e.Details, "\n  ")
	}
	return s
}

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// IsNotFound reports whether err is an API error with status 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
