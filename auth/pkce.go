package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"

	"golang.org/x/oauth2"
)

// isPKCEString reports whether s has RFC 7636 length (43 to 128) and
// alphabet (unreserved characters), as verifiers and S256 challenges do.
func isPKCEString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// verifyS256 checks an RFC 7636 S256 code_verifier against its challenge in constant time.
func verifyS256(verifier, challenge string) bool {
	if !isPKCEString(verifier) {
		return false
	}
	got := oauth2.S256ChallengeFromVerifier(verifier)
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// randomString returns 32 random bytes, base64url: states, nonces, handles, codes.
func randomString() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
