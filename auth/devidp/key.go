package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
)

// rsaKeyBits is the size of the RSA key generated when none is configured.
// RS256 is the algorithm every OpenID relying party must accept.
const rsaKeyBits = 2048

// signingKey is the provider's one signing key. It implements op.SigningKey
// (private half) and, through publicKey, op.Key (the JWKS entry).
type signingKey struct {
	id     string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey: what go-jose signs with
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.signer }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS view of signingKey.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.signer.Public() }

// newSigningKey wraps signer, choosing the JWS algorithm from its type and
// the key ID from its RFC 7638 thumbprint, so the ID is stable across restarts.
func newSigningKey(signer crypto.Signer) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < rsaKeyBits {
			return nil, fmt.Errorf("%w: RSA key has %d bits, want at least %d", ErrUnsupportedKey, k.N.BitLen(), rsaKeyBits)
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		default:
			return nil, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("%w: %T (want *rsa.PrivateKey or *ecdsa.PrivateKey)", ErrUnsupportedKey, signer)
	}
	jwk := jose.JSONWebKey{Key: signer.Public()}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(thumb), alg: alg, signer: signer}, nil
}

// loadOrCreateKey reads the PEM private key at path, or generates an RSA key
// and writes it there (mode 0600, directory 0700) when the file does not exist.
func loadOrCreateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return parseKey(path, data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("devidp: read signing key: %w", err)
	}
	key, err := generateKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devidp: encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("devidp: create key directory: %w", err)
	}
	// O_EXCL: if another process created the file meanwhile, use its key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: create signing key file: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("devidp: write signing key file: %w", werr)
	}
	return key, nil
}

// generateKey makes a fresh RSA signing key.
func generateKey() (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate signing key: %w", err)
	}
	return key, nil
}

// parseKey decodes a PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) PEM private key.
func parseKey(path string, data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("devidp: signing key %s: %w: no PEM block", path, ErrUnsupportedKey)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("devidp: signing key %s: %w: PEM type %q", path, ErrUnsupportedKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: signing key %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devidp: signing key %s: %w: %T", path, ErrUnsupportedKey, key)
	}
	return signer, nil
}
