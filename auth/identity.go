// Package auth verifies OpenID Connect identities, runs the CLI login flows
// through the proxy, and issues jitproxy session tokens. The proxy is the
// OIDC client: the CLI only ever holds a jitproxy session token, never the
// identity provider's tokens. It does not decide what an identity may do
// (that is the contract's job), and it does not persist sessions itself: it
// declares SessionStore and ships an in-memory one for tests and dev.
package auth

// Identity is a verified person, as the contract sees them.
type Identity struct {
	Subject string   `json:"subject"` // the IdP's "sub"
	Issuer  string   `json:"issuer"`  // the IdP's issuer URL
	Email   string   `json:"email"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}
