package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
)

// requestInfo is what the request log line and the handlers of one request
// share. Only the request's goroutine touches it.
type requestInfo struct {
	id string
	// log is the request's child logger: request_id, and identity once the
	// caller is known.
	log      zerolog.Logger
	identity string
}

func (ri *requestInfo) setIdentity(key string) {
	ri.identity = key
	ri.log = ri.log.With().Str("identity", key).Logger()
}

type requestInfoKey struct{}

// info returns r's requestInfo, set by ServeHTTP.
func info(r *http.Request) *requestInfo {
	if ri, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{} // not reached through ServeHTTP; logs nothing
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

// ServeHTTP routes r with a request ID (sent as X-Request-Id), nosniff,
// panic recovery, and one log line when it is done. The line carries no
// headers, query strings or bodies: those may hold tokens and authorization
// codes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ri := &requestInfo{id: newRequestID()}
	ri.log = h.log.With().Str("request_id", ri.id).Logger()
	r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri))
	rw := &responseWriter{ResponseWriter: w}
	rw.Header().Set("X-Request-Id", ri.id)
	rw.Header().Set("X-Content-Type-Options", "nosniff")

	defer func() {
		p := recover()
		abort := p != nil
		if p != nil && p != http.ErrAbortHandler {
			ri.log.Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("handler panicked")
			if !rw.wroteHeader {
				clear(rw.Header()) // whatever the handler meant to send
				rw.Header().Set("X-Request-Id", ri.id)
				rw.Header().Set("X-Content-Type-Options", "nosniff")
				apiHeaders(rw)
				writeError(rw, internalError(ri.id))
				abort = false
			}
		}
		level := zerolog.InfoLevel
		if rw.status >= 500 || abort {
			level = zerolog.WarnLevel
		}
		ri.log.WithLevel(level).
			Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", rw.status).
			Int64("bytes", rw.bytes).
			Dur("duration", time.Since(start)).
			Str("remote", r.RemoteAddr).
			Str("identity", ri.identity).
			Bool("aborted", abort).
			Msg("request")
		if abort {
			// The response is already partly sent: cut the connection so
			// the client sees a failure, not a complete-looking answer.
			panic(http.ErrAbortHandler)
		}
	}()
	h.route(rw, r)
	if !rw.wroteHeader {
		rw.status = http.StatusOK // net/http sends 200 for a handler that wrote nothing
	}
}

// responseWriter remembers the status and size of a response for the log
// line.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush,
// deadlines).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
