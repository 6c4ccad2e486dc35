package api

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// List limits: a list without a limit returns the newest defaultListLimit.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// RequestBody is the body of POST /api/v1/amendments.
type RequestBody struct {
	Target         string `json:"target"`
	Login          string `json:"login,omitempty"`
	Role           string `json:"role,omitempty"`
	Database       string `json:"database,omitempty"`
	PortForwarding bool   `json:"port_forwarding,omitempty"`
	ReadOnly       bool   `json:"read_only,omitempty"`
	// Duration is how long the access lasts once active: "2h", "90m", "1d".
	Duration string `json:"duration"`
	Reason   string `json:"reason,omitempty"`
	Ticket   string `json:"ticket,omitempty"`
	// Start schedules the start: an RFC 3339 time, or "+" and a duration
	// from now ("+30m"). Empty means as soon as approved.
	Start string `json:"start,omitempty"`
}

// ApproveBody is the body of POST /api/v1/amendments/{id}/approve.
type ApproveBody struct {
	Comment string `json:"comment,omitempty"`
}

// ReasonBody is the body of the deny, revoke and withdraw endpoints.
type ReasonBody struct {
	Reason string `json:"reason,omitempty"`
}

// ExtendBody is the body of POST /api/v1/amendments/{id}/extend.
type ExtendBody struct {
	// Duration is how much longer the access should last: "30m", "1h".
	Duration string `json:"duration"`
	Reason   string `json:"reason,omitempty"`
}

func (h *Handler) createAmendment(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body RequestBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	req := amendment.Request{
		Target:         body.Target,
		Login:          body.Login,
		Role:           body.Role,
		Database:       body.Database,
		PortForwarding: body.PortForwarding,
		ReadOnly:       body.ReadOnly,
		Reason:         body.Reason,
		Ticket:         body.Ticket,
	}
	// An empty duration goes to the contract, which says what the maximum is.
	if body.Duration != "" {
		d, err := amendment.ParseDuration(body.Duration)
		if err != nil {
			return badRequest("duration: %v", err)
		}
		req.Duration = d
	}
	start, err := h.parseStart(body.Start)
	if err != nil {
		return err
	}
	req.StartAt = start
	a, err := h.amendments.Request(r.Context(), who, req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/amendments/"+url.PathEscape(a.ID))
	writeJSON(w, http.StatusCreated, NewAmendment(a))
	return nil
}

// parseStart parses a scheduled start: "" (none), "+30m", or RFC 3339.
// Whether the time is acceptable is the contract's decision.
func (h *Handler) parseStart(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if rel, ok := strings.CutPrefix(s, "+"); ok {
		d, err := amendment.ParseDuration(rel)
		if err != nil {
			return time.Time{}, badRequest("start: %v", err)
		}
		return h.now().Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest(`start %q is neither an RFC 3339 time (2026-05-01T09:00:00Z) nor "+" and a duration from now (+30m)`, s)
	}
	return t, nil
}

var listParams = []string{"state", "requester", "target", "limit"}

func (h *Handler) listAmendments(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	q := r.URL.Query()
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(listParams, k) {
			return badRequest("unknown query parameter %q: use %s", k, strings.Join(listParams, ", "))
		}
	}
	f := amendment.Filter{Target: q.Get("target"), Limit: defaultListLimit}
	for _, v := range q["state"] {
		for name := range strings.SplitSeq(v, ",") {
			st, err := amendment.ParseState(strings.TrimSpace(name))
			if err != nil {
				return err
			}
			if !slices.Contains(f.States, st) {
				f.States = append(f.States, st)
			}
		}
	}
	switch req := strings.TrimSpace(q.Get("requester")); req {
	case "":
	case "me":
		f.Requester = who.Key()
	default:
		f.Requester = strings.ToLower(req)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			return badRequest("limit %q must be a whole number from 1 to %d", s, maxListLimit)
		}
		f.Limit = n
	}
	list, err := h.amendments.List(r.Context(), who, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AmendmentList{Amendments: newAmendments(list)})
	return nil
}

func (h *Handler) getAmendment(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	a, err := h.amendments.Get(r.Context(), who, r.PathValue("id"))
	return respond(w, a, err)
}

func (h *Handler) approve(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body ApproveBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	a, err := h.amendments.Approve(r.Context(), who, r.PathValue("id"), body.Comment)
	return respond(w, a, err)
}

func (h *Handler) deny(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body ReasonBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	a, err := h.amendments.Deny(r.Context(), who, r.PathValue("id"), body.Reason)
	return respond(w, a, err)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body ReasonBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	a, err := h.amendments.Revoke(r.Context(), who, r.PathValue("id"), body.Reason)
	return respond(w, a, err)
}

func (h *Handler) extend(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body ExtendBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	d, err := amendment.ParseDuration(body.Duration)
	if err != nil {
		return badRequest("duration: %v", err)
	}
	a, err := h.amendments.Extend(r.Context(), who, r.PathValue("id"), d, body.Reason)
	return respond(w, a, err)
}

func (h *Handler) withdraw(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	var body ReasonBody
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	a, err := h.amendments.Withdraw(r.Context(), who, r.PathValue("id"), body.Reason)
	return respond(w, a, err)
}

// respond sends the amendment an action returned, or its error to fail.
func respond(w http.ResponseWriter, a *amendment.Amendment, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, NewAmendment(a))
	return nil
}
