package api

import (
	"context"
	"net/http"
	"time"
)

// readyTimeout bounds one readiness check of the store.
const readyTimeout = 2 * time.Second

// Status is the answer of /healthz and of /readyz when ready.
type Status struct {
	Status string `json:"status"`
}

// healthz says the process is up and serving HTTP; nothing else.
func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Status{Status: "ok"})
}

// readyz says whether requests can be served: the store answers.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		info(r).log.Warn().Err(err).Msg("not ready")
		writeError(w, errorf(http.StatusServiceUnavailable, CodeNotReady, "not ready: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, Status{Status: "ready"})
}
