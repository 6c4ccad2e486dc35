package certs

import (
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// maxKeyFileSize bounds what is read from a key file; an OpenSSH Ed25519
// key is about 400 bytes, an RSA 4096 one about 3.4 KB.
const maxKeyFileSize = 64 << 10

// LoadOrCreateKey returns the private key in the file at path, in OpenSSH
// format (what ssh-keygen writes). When the file does not exist it
// generates an Ed25519 key and writes it there atomically with mode 0600,
// creating missing directories with mode 0700; processes racing to create
// the same file all end up with the one key that won. It refuses a file
// that group or others may read or write, and an encrypted key.
func LoadOrCreateKey(path string) (ssh.Signer, error) {
	if path == "" {
		return nil, fmt.Errorf("certs: load key: %w: no key file path", ErrInvalidConfig)
	}
	data, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: load key %s: %w", path, err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("certs: load key %s: the key is encrypted with a passphrase; jitproxy needs an unencrypted key in a mode 0600 file", path)
	case err != nil:
		return nil, fmt.Errorf("certs: load key %s: not an OpenSSH private key: %w", path, err)
	}
	return signer, nil
}

// createKeyFile generates an Ed25519 key, writes it to path unless another
// process got there first, and returns what path then holds.
func createKeyFile(path string) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "jitproxy "+filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return createPrivateFile(path, pem.EncodeToMemory(block))
}

// readPrivateFile reads a secret file, refusing one that is not a regular
// file or that group or others may read or write. A missing file is an
// error matching fs.ErrNotExist.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat() // the opened file, not the path: no window to swap it
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", info.Mode().Type())
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w (mode %04o): run chmod 600 %s", ErrKeyFileMode, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("larger than %d bytes: not a key file", maxKeyFileSize)
	}
	return data, nil
}

// createPrivateFile writes data to a new file at path with mode 0600, in a
// directory created with mode 0700 if missing. The file appears complete or
// not at all (written to a temporary name, then hard-linked into place,
// which never replaces an existing file). If path already exists, because
// another process created it meanwhile, it returns that file's contents.
func createPrivateFile(path string, data []byte) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readPrivateFile(path)
	} else if err != nil {
		return nil, err
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		_ = d.Sync()
		d.Close()
	}
	return data, nil
}
