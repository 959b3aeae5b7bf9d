package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeBody reads a JSON object body into v strictly: at most max bytes,
// only the keys listed (spelled exactly: encoding/json alone would match
// them case-insensitively), each at most once, nothing after the object.
// An empty body leaves v as it is when emptyOK.
func decodeBody(r *http.Request, max int64, v any, keys []string, emptyOK bool) *Error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "Content-Type %q: send application/json", ct)
		}
	}
	if r.ContentLength > max {
		return Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body of %d bytes, more than %d", r.ContentLength, max)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "read request body: %v", err)
	}
	if int64(len(data)) > max {
		return Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body longer than %d bytes", max)
	}
	return decodeJSON(data, v, keys, emptyOK)
}

// decodeJSON is decodeBody's parser, apart for fuzzing.
func decodeJSON(data []byte, v any, keys []string, emptyOK bool) *Error {
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		if emptyOK {
			return nil
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "empty request body: send a JSON object")
	}
	if err := checkKeys(data, keys); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: %s", jsonErr(err))
	}
	return nil
}

// checkKeys walks the top-level object's keys: each must be one of keys,
// spelled exactly, and appear once. Nested values are skipped (the types
// decodeJSON fills have none but string arrays). It also refuses anything
// but one object, and data after it.
func checkKeys(data []byte, keys []string) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: %s", jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: %s", jsonErr(err))
		}
		k, _ := tok.(string)
		if !slices.Contains(keys, k) {
			msg := fmt.Sprintf("request body: unknown field %q", k)
			if len(keys) > 0 {
				msg += " (known: " + strings.Join(keys, ", ") + ")"
			}
			return &Error{Status: http.StatusBadRequest, Code: CodeUnknownField, Message: msg}
		}
		if seen[k] {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: field %q given twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: field %q: %s", k, jsonErr(err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "request body: data after the JSON object")
	}
	return nil
}

// jsonErr words a decoding error for the client.
func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of JSON"
	}
	return err.Error()
}

// AuditQuery is the query of GET /audit.
type AuditQuery struct {
	// App keeps one identity's records (an app, "system" or "unmanaged").
	App string
	// Since keeps records last seen at or after it.
	Since time.Time
	// Limit keeps the newest Limit records (0: all the server holds).
	Limit int
	// Follow streams new records after the stored ones until the client
	// goes away.
	Follow bool
}

// MaxAuditLimit bounds the limit parameter of GET /audit.
const MaxAuditLimit = 100000

var identityName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,30}$`)

// Values encodes q as URL query parameters.
func (q AuditQuery) Values() url.Values {
	v := url.Values{}
	if q.App != "" {
		v.Set("app", q.App)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	return v
}

// ParseAuditQuery reads GET /audit's parameters strictly: app (an identity
// name), since (an RFC 3339 time, or a duration such as 10m meaning that long
// before now), limit (1..MaxAuditLimit) and follow (1, true, 0 or false).
// Unknown or repeated parameters are errors.
func ParseAuditQuery(v url.Values, now time.Time) (AuditQuery, *Error) {
	var q AuditQuery
	bad := func(format string, args ...any) (AuditQuery, *Error) {
		return AuditQuery{}, Errorf(http.StatusBadRequest, CodeBadQuery, format, args...)
	}
	for k, vals := range v {
		if len(vals) != 1 {
			return bad("parameter %q given %d times", k, len(vals))
		}
		s := vals[0]
		switch k {
		case "app":
			if !identityName.MatchString(s) {
				return bad("app=%q: not an app name (1 to 31 of a-z, 0-9, _ and -)", s)
			}
			q.App = s
		case "since":
			t, err := parseSince(s, now)
			if err != nil {
				return bad("since=%q: %v", s, err)
			}
			q.Since = t
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxAuditLimit {
				return bad("limit=%q: want a number from 1 to %d", s, MaxAuditLimit)
			}
			q.Limit = n
		case "follow":
			switch s {
			case "1", "true":
				q.Follow = true
			case "0", "false":
			default:
				return bad("follow=%q: want 1 or 0", s)
			}
		default:
			return bad("unknown parameter %q (known: app, since, limit, follow)", k)
		}
	}
	return q, nil
}

// parseSince reads an RFC 3339 time or a positive duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (2006-01-02T15:04:05Z) or a duration (10m, 2h)")
	}
	if d <= 0 || d > 100*365*24*time.Hour {
		return time.Time{}, errors.New("the duration must be positive and under 100 years")
	}
	return now.Add(-d), nil
}

// noQuery refuses any query parameter on resources that take none.
func noQuery(r *http.Request) *Error {
	if r.URL.RawQuery == "" {
		return nil
	}
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeBadQuery, "query: %v", err)
	}
	for k := range v {
		return Errorf(http.StatusBadRequest, CodeBadQuery, "unknown parameter %q: this resource takes none", k)
	}
	return nil
}
