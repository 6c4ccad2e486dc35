package certs

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
	"unicode"
)

// Token format. A token is TokenPrefix followed by the unpadded base64url
// encoding of payload || HMAC-SHA256(key, payload), where payload is
//
//	version (1 byte) | expiry (8 bytes, Unix seconds, big-endian) | nonce (16 bytes) |
//	person, amendment, target (each a uvarint length and the bytes)
const (
	// TokenPrefix starts every DB token, so that people and secret
	// scanners can tell one from other strings.
	TokenPrefix = "jpdb_"

	tokenVersion    = 1
	tokenNonceSize  = 16
	tokenMACSize    = sha256.Size
	tokenHeaderSize = 1 + 8 + tokenNonceSize
	maxTokenField   = 255  // bytes of person, amendment or target
	maxTokenLen     = 2048 // characters of a whole token
	minTokenKeySize = 32
	defaultTokenTTL = 24 * time.Hour
)

// TokenConfig configures a TokenIssuer.
type TokenConfig struct {
	// Key is the HMAC key, at least 32 bytes. nil means KeyFile.
	Key []byte
	// KeyFile holds the key, base64-encoded, when Key is nil; a missing
	// file is generated (32 random bytes) with mode 0600, and one that
	// group or others may read is refused.
	KeyFile string

	MaxTTL time.Duration    // 0 means 24h: the longest time until a token's expiry
	Now    func() time.Time // nil means time.Now
	Rand   io.Reader        // nil means crypto/rand: nonces and a generated key; must be safe for concurrent use
}

// Token is what a DB token says.
type Token struct {
	Person    string    // the identity it was issued to
	Amendment string    // the amendment it rides on
	Target    string    // the PostgreSQL target it opens
	ExpiresAt time.Time // truncated to the second
}

// TokenIssuer issues and verifies DB tokens: the short-lived passwords
// people give psql for the PostgreSQL endpoint. A token is bound to a
// person, an amendment and a target, and authenticated with HMAC-SHA256;
// nothing about it is stored. It is safe for concurrent use.
type TokenIssuer struct {
	key    []byte
	maxTTL time.Duration
	now    func() time.Time
	rand   io.Reader
}

// NewTokenIssuer returns a TokenIssuer with the configured key.
func NewTokenIssuer(cfg TokenConfig) (*TokenIssuer, error) {
	ti := &TokenIssuer{maxTTL: orDefault(cfg.MaxTTL, defaultTokenTTL), now: cfg.Now, rand: cfg.Rand}
	if ti.now == nil {
		ti.now = time.Now
	}
	if ti.rand == nil {
		ti.rand = rand.Reader
	}
	switch {
	case cfg.MaxTTL < 0:
		return nil, fmt.Errorf("certs: new token issuer: %w: negative MaxTTL", ErrInvalidConfig)
	case cfg.Key != nil && cfg.KeyFile != "":
		return nil, fmt.Errorf("certs: new token issuer: %w: set Key or KeyFile, not both", ErrInvalidConfig)
	case cfg.Key != nil:
		ti.key = append([]byte(nil), cfg.Key...)
	case cfg.KeyFile != "":
		key, err := ti.loadOrCreateKey(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certs: new token issuer: key file %s: %w", cfg.KeyFile, err)
		}
		ti.key = key
	default:
		return nil, fmt.Errorf("certs: new token issuer: %w: Key or KeyFile is required", ErrInvalidConfig)
	}
	if len(ti.key) < minTokenKeySize {
		return nil, fmt.Errorf("certs: new token issuer: %w: the key has %d bytes, at least %d are needed", ErrInvalidConfig, len(ti.key), minTokenKeySize)
	}
	return ti, nil
}

// loadOrCreateKey reads the base64 key in path, generating it if missing.
func (ti *TokenIssuer) loadOrCreateKey(path string) ([]byte, error) {
	data, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, minTokenKeySize)
		if _, err := io.ReadFull(ti.rand, key); err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		data, err = createPrivateFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
	}
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, errors.New("not a base64-encoded key") // never echo the file's contents
	}
	return key, nil
}

// String never shows the key.
func (ti *TokenIssuer) String() string { return "certs.TokenIssuer{key redacted}" }

// GoString is String, so that %#v does not print the key.
func (ti *TokenIssuer) GoString() string { return ti.String() }

// Issue returns a new token for t: an opaque string starting with
// TokenPrefix. t.ExpiresAt must be in the future and at most
// TokenConfig.MaxTTL away; it is truncated to the second.
func (ti *TokenIssuer) Issue(t Token) (string, error) {
	tok, err := ti.issue(t)
	if err != nil {
		return "", fmt.Errorf("certs: issue db token for %q on %q: %w", t.Person, t.Target, err)
	}
	return tok, nil
}

func (ti *TokenIssuer) issue(t Token) (string, error) {
	now := ti.now()
	for _, f := range []struct{ name, v string }{{"person", t.Person}, {"amendment", t.Amendment}, {"target", t.Target}} {
		if f.v == "" || len(f.v) > maxTokenField {
			return "", fmt.Errorf("%w: %s has %d", ErrBadTokenField, f.name, len(f.v))
		}
	}
	switch {
	case !t.ExpiresAt.After(now):
		return "", fmt.Errorf("%w: expiry %s is not in the future", ErrBadValidity, stamp(t.ExpiresAt))
	case t.ExpiresAt.Sub(now) > ti.maxTTL:
		return "", fmt.Errorf("%w: expiry %s is more than %s away", ErrValidityTooLong, stamp(t.ExpiresAt), ti.maxTTL)
	}
	b := make([]byte, tokenHeaderSize, tokenHeaderSize+3*(binary.MaxVarintLen16+maxTokenField)+tokenMACSize)
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(t.ExpiresAt.Unix()))
	if _, err := io.ReadFull(ti.rand, b[9:tokenHeaderSize]); err != nil {
		return "", fmt.Errorf("read random nonce: %w", err)
	}
	for _, s := range []string{t.Person, t.Amendment, t.Target} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = ti.mac(b, b)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// mac appends HMAC-SHA256(key, payload) to dst.
func (ti *TokenIssuer) mac(dst, payload []byte) []byte {
	m := hmac.New(sha256.New, ti.key)
	m.Write(payload)
	return m.Sum(dst)
}

// Verify checks that token is authentic, unexpired, and was issued to
// person for target, and returns what it says; the caller checks that its
// amendment is still active. Errors wrap ErrTokenInvalid, ErrTokenExpired,
// ErrTokenWrongPerson or ErrTokenWrongTarget, end with the command that
// gets a new token, and never contain the token.
func (ti *TokenIssuer) Verify(token, person, target string) (Token, error) {
	t, err := ti.verify(token, person, target)
	if err != nil {
		return Token{}, fmt.Errorf("certs: verify db token for %q: %w: run jitproxy db-token %s", target, err, commandArg(target))
	}
	return t, nil
}

func (ti *TokenIssuer) verify(token, person, target string) (Token, error) {
	enc, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok || len(token) > maxTokenLen {
		return Token{}, ErrTokenInvalid
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(b) < tokenHeaderSize+3+tokenMACSize {
		return Token{}, ErrTokenInvalid
	}
	payload, mac := b[:len(b)-tokenMACSize], b[len(b)-tokenMACSize:]
	var sum [tokenMACSize]byte
	if !hmac.Equal(mac, ti.mac(sum[:0], payload)) {
		return Token{}, ErrTokenInvalid
	}
	t, ok := parseTokenPayload(payload)
	switch {
	case !ok:
		return Token{}, ErrTokenInvalid
	case t.Person != person:
		return Token{}, ErrTokenWrongPerson
	case t.Target != target:
		return Token{}, ErrTokenWrongTarget
	case !ti.now().Before(t.ExpiresAt):
		return Token{}, ErrTokenExpired
	}
	return t, nil
}

// parseTokenPayload decodes an authenticated payload of this version.
func parseTokenPayload(b []byte) (Token, bool) {
	if b[0] != tokenVersion {
		return Token{}, false
	}
	expiry := binary.BigEndian.Uint64(b[1:9])
	b = b[tokenHeaderSize:]
	var fields [3]string
	for i := range fields {
		n, size := binary.Uvarint(b)
		if size <= 0 || n == 0 || n > maxTokenField || n > uint64(len(b)-size) {
			return Token{}, false
		}
		fields[i] = string(b[size : size+int(n)])
		b = b[size+int(n):]
	}
	if len(b) != 0 || expiry > 1<<62 {
		return Token{}, false
	}
	return Token{Person: fields[0], Amendment: fields[1], Target: fields[2], ExpiresAt: time.Unix(int64(expiry), 0)}, true
}

// commandArg is target as it can be typed after jitproxy db-token, or
// TARGET when it is not a plain name (it comes from the client).
func commandArg(target string) string {
	ok := target != "" && len(target) <= maxTokenField && !strings.ContainsFunc(target, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(".-_/", r))
	})
	if !ok {
		return "TARGET"
	}
	return target
}
