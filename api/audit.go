package api

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/audit"
)

// VerifyResult is the answer to GET /api/v1/audit/verify. Events, Head and
// LastSeq describe the intact trail; on a break, its intact prefix.
type VerifyResult struct {
	OK      bool         `json:"ok"`
	Events  int64        `json:"events"`
	Head    string       `json:"head"`
	LastSeq int64        `json:"last_seq"`
	Error   *VerifyBreak `json:"error,omitempty"`
}

// VerifyBreak names the first row where the hash chain does not hold.
type VerifyBreak struct {
	Seq      int64  `json:"seq"`
	Position int64  `json:"position"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// mayReadAudit lets auditors and admins read the trail, nobody else.
func (h *Handler) mayReadAudit(who amendment.Identity) error {
	c := h.amendments.Contract()
	if c.CanReadAll(who) {
		return nil
	}
	groups := slices.Concat(c.AuditorGroups, c.AdminGroups)
	if len(groups) == 0 {
		return errorf(http.StatusForbidden, CodeForbidden, "reading the audit trail needs an auditor or admin group, and the contract names none; ask your jitproxy admin")
	}
	return errorf(http.StatusForbidden, CodeForbidden, "reading the audit trail needs membership in one of %s; ask your jitproxy admin", strings.Join(groups, ", "))
}

// auditStream sends the trail after seq ?after= as JSON lines, streamed in
// constant memory. A failure before the first line is an ordinary error
// response; after it, the connection is cut so the client cannot mistake a
// truncated trail for a whole one.
func (h *Handler) auditStream(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	if err := h.mayReadAudit(who); err != nil {
		return err
	}
	q := r.URL.Query()
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "after" {
			return badRequest("unknown query parameter %q: use after", k)
		}
	}
	var after int64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return badRequest("after %q must be a sequence number (a whole number, 0 or more)", s)
		}
		after = n
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	sw := &startWriter{w: w}
	if _, err := audit.Export(sw, h.audit.AuditEvents(r.Context(), after)); err != nil {
		if !sw.started {
			return err
		}
		info(r).log.Error().Err(err).Msg("audit stream cut")
		panic(http.ErrAbortHandler)
	}
	if !sw.started {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

// startWriter notes whether anything was written, that is whether the
// status has gone out.
type startWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	s.started = true
	return s.w.Write(p)
}

func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	if err := h.mayReadAudit(who); err != nil {
		return err
	}
	sum, err := audit.Verify(h.audit.AuditEvents(r.Context(), 0))
	if be, ok := errors.AsType[*audit.BreakError](err); ok {
		writeJSON(w, http.StatusOK, VerifyResult{
			Events:  be.Position - 1,
			Head:    sum.Head,
			LastSeq: sum.LastSeq,
			Error:   &VerifyBreak{Seq: be.Seq, Position: be.Position, Reason: be.Reason, Message: be.Error()},
		})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, VerifyResult{OK: true, Events: sum.Events, Head: sum.Head, LastSeq: sum.LastSeq})
	return nil
}
