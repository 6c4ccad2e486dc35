package amendment

import "fmt"

// State is where an amendment is in its lifecycle:
//
//	requested ──approve──▶ approved ──start──▶ active ──expiry──▶ expired
//	    ├──deny──▶ denied      └──revoke──▶ revoked ◀──revoke──┘
//	    └──withdraw / request TTL──▶ withdrawn
//
// An active amendment can be extended (it stays active, with a new expiry).
type State string

// The states.
const (
	Requested State = "requested"
	Approved  State = "approved"
	Active    State = "active"
	Expired   State = "expired"
	Revoked   State = "revoked"
	Denied    State = "denied"
	Withdrawn State = "withdrawn"
)

// States lists every state, in lifecycle order.
var States = []State{Requested, Approved, Active, Expired, Revoked, Denied, Withdrawn}

// Final reports whether no transition leaves s.
func (s State) Final() bool {
	switch s {
	case Expired, Revoked, Denied, Withdrawn:
		return true
	}
	return false
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// ParseState parses a state name as written in the API and CLI.
func ParseState(s string) (State, error) {
	st := State(s)
	if !st.Valid() {
		return "", Errorf(CodeBadRequest, "unknown state %q: use one of requested, approved, active, expired, revoked, denied, withdrawn", s)
	}
	return st, nil
}

// Audit event types for amendment transitions. Each transition writes
// exactly one audit row of one of these types.
const (
	EventRequested          = "amendment.requested"
	EventApprovalAdded      = "amendment.approval_added"
	EventApproved           = "amendment.approved"
	EventActivated          = "amendment.activated"
	EventDenied             = "amendment.denied"
	EventWithdrawn          = "amendment.withdrawn"
	EventRevoked            = "amendment.revoked"
	EventExpired            = "amendment.expired"
	EventExtensionRequested = "amendment.extension_requested"
	EventExtensionApproval  = "amendment.extension_approval_added"
	EventExtended           = "amendment.extended"
	EventExtensionDenied    = "amendment.extension_denied"
)

// transitions is the table of legal state changes. A transition that keeps
// the state (approval added, extension) is listed as from == to.
var transitions = map[State][]State{
	Requested: {Requested, Approved, Denied, Withdrawn},
	Approved:  {Active, Revoked},
	Active:    {Active, Expired, Revoked},
}

// CanTransition reports whether from → to is a legal transition.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

func checkTransition(a *Amendment, to State, verb string) error {
	if CanTransition(a.State, to) {
		return nil
	}
	return &Error{
		Code:    CodeInvalidState,
		Message: fmt.Sprintf("cannot %s amendment %s: it is %s%s", verb, a.ShortID(), a.State, stateHint(a.State)),
	}
}

func stateHint(s State) string {
	switch s {
	case Expired, Revoked, Denied, Withdrawn:
		return ", which is final; request a new amendment instead"
	case Approved:
		return " and waiting for its start time"
	case Active:
		return " already"
	}
	return ""
}
