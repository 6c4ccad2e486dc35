package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// writeJSON sends v as the whole response. v is marshalled before anything
// is written, so a marshalling failure is still a clean 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"something went wrong in jitproxy: the response could not be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // a failed write means the client left
}

// decodeBody reads r's body, at most h.maxBody bytes, into dst, a pointer
// to a struct. The body must be exactly one JSON object, sent as
// application/json, whose members are all fields of dst, each once and
// spelled exactly. Every failure is an *Error that says what to fix.
//
// Requiring application/json also keeps browsers from sending these requests
// cross-site without a CORS preflight.
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"send the request body as a JSON object with Content-Type: application/json")
	}
	tooLarge := errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
		"the request body is larger than the limit of %s; shorten the reason or comment", byteSize(h.maxBody))
	if r.ContentLength > h.maxBody {
		return tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge
		}
		return badRequest("the request body could not be read: %v", err)
	}
	names := fieldNames(dst)
	if err := checkObject(body, names); err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return badRequest("field %q must be %s, not %s", te.Field, jsonKind(te.Type), firstWord(te.Value))
		}
		return badRequest("the request body is not valid JSON: %v", err)
	}
	return nil
}

// checkObject checks that body is exactly one JSON object whose member
// names are all in names, each once. encoding/json alone would accept
// duplicate members, match names case-insensitively and only describe an
// unknown field in its error text.
func checkObject(body []byte, names []string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	switch {
	case err == io.EOF:
		return badRequest("the request body is empty: send a JSON object, e.g. {}")
	case err != nil:
		return syntaxError(err, dec)
	case tok != json.Delim('{'):
		return badRequest("the request body must be a JSON object, not %s", tokenKind(tok))
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err, dec)
		}
		name, _ := tok.(string) // inside an object, Token returns member names as strings
		if !slices.Contains(names, name) {
			return badRequest("unknown field %q: the fields are %s", name, strings.Join(names, ", "))
		}
		if seen[name] {
			return badRequest("field %q appears twice: send it once", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntaxError(err, dec)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxError(err, dec)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON object at byte %d: send exactly one object", dec.InputOffset())
	}
	return nil
}

func syntaxError(err error, dec *json.Decoder) *Error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest("malformed JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return badRequest("malformed JSON: the body ends at byte %d before the object is complete", dec.InputOffset())
	}
	return badRequest("malformed JSON at byte %d: %v", dec.InputOffset(), err)
}

// fieldNames lists the JSON member names of the struct dst points to.
func fieldNames(dst any) []string {
	t := reflect.TypeOf(dst).Elem()
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// jsonKind names what JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// tokenKind names the JSON value that starts with tok.
func tokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim: // '{' is handled by the caller, and a value cannot start with '}' or ']'
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a number"
}

// firstWord turns UnmarshalTypeError.Value ("string", "number -5") into a
// kind for a message.
func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	switch w {
	case "array", "object":
		return "an " + w
	case "bool":
		return "a boolean"
	case "string", "number":
		return "a " + w
	}
	return w
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
