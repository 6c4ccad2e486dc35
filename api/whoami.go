package api

import (
	"net/http"
	"time"

	"github.com/jitproxy/jitproxy/amendment"
)

// Whoami is the answer to GET /api/v1/whoami: who the caller is, and their
// amendments that are active or still to come.
type Whoami struct {
	Identity   amendment.Identity `json:"identity"`
	Amendments []Amendment        `json:"amendments"`
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, who amendment.Identity) error {
	list, err := h.amendments.List(r.Context(), who, amendment.Filter{
		States:    []amendment.State{amendment.Active, amendment.Approved, amendment.Requested},
		Requester: who.Key(),
		Limit:     maxListLimit,
	})
	if err != nil {
		return err
	}
	now := h.now()
	out := Whoami{Identity: who, Amendments: make([]Amendment, 0, len(list))}
	for _, a := range list {
		v := NewAmendment(a)
		v.TimeLeft = amendment.FormatDuration(timeLeft(a, now))
		out.Amendments = append(out.Amendments, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// timeLeft is how much access a has left at now: until expiry once active,
// its whole duration before that, whole seconds.
func timeLeft(a *amendment.Amendment, now time.Time) time.Duration {
	if a.State != amendment.Active {
		return a.Duration
	}
	return max(a.ExpiresAt.Sub(now), 0).Truncate(time.Second)
}
