package certs

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateKeyGenerates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "ca")
	path := filepath.Join(dir, "user_ca")

	first, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if got, want := first.PublicKey().Type(), ssh.KeyAlgoED25519; got != want {
		t.Errorf("key type: got %s; want %s", got, want)
	}
	for _, f := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {dir, 0o700}, {filepath.Dir(dir), 0o700}} {
		info, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != f.want {
			t.Errorf("mode of %s: got %04o; want %04o", f.path, got, f.want)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		t.Errorf("file is not an OpenSSH PEM private key:\n%s", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries; want only the key (no temporary file left)", len(entries))
	}

	second, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if !sameKey(first.PublicKey(), second.PublicKey()) {
		t.Errorf("second call: got key %s; want the first one, %s", ssh.FingerprintSHA256(second.PublicKey()), ssh.FingerprintSHA256(first.PublicKey()))
	}
}

func TestLoadOrCreateKeyConcurrentCreation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_ca")
	const n = 8
	keys := make([]ssh.PublicKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := LoadOrCreateKey(path)
			errs[i] = err
			if err == nil {
				keys[i] = s.PublicKey()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if !sameKey(keys[i], keys[0]) {
			t.Errorf("call %d: got a different key than call 0; want one key for all", i)
		}
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte // nil means a directory at the path
		mode    os.FileMode
		wantErr error  // nil means any error
		want    string // in the message, after replacing PATH with the path
	}{
		{name: "group readable", content: pem.EncodeToMemory(plain), mode: 0o640, wantErr: ErrKeyFileMode, want: "chmod 600 PATH"},
		{name: "world readable", content: pem.EncodeToMemory(plain), mode: 0o604, wantErr: ErrKeyFileMode, want: "chmod 600 PATH"},
		{name: "group writable", content: pem.EncodeToMemory(plain), mode: 0o620, wantErr: ErrKeyFileMode, want: "chmod 600 PATH"},
		{name: "garbage", content: []byte("not a key\n"), mode: 0o600, want: "PATH: not an OpenSSH private key"},
		{name: "empty", content: []byte{}, mode: 0o600, want: "PATH: not an OpenSSH private key"},
		{name: "encrypted", content: pem.EncodeToMemory(encrypted), mode: 0o600, want: "PATH: the key is encrypted with a passphrase"},
		{name: "directory", mode: 0o700, want: "PATH: not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca_key")
			if tt.content == nil {
				if err := os.Mkdir(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(path)

			s, err := LoadOrCreateKey(path)
			if err == nil {
				t.Fatalf("got key %s; want an error", ssh.FingerprintSHA256(s.PublicKey()))
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v; want %v", err, tt.wantErr)
			}
			if want := strings.ReplaceAll(tt.want, "PATH", path); !strings.Contains(err.Error(), want) {
				t.Errorf("got %q; want it to contain %q", err, want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Errorf("the refused file was changed")
			}
		})
	}
	if _, err := LoadOrCreateKey(""); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty path: got %v; want ErrInvalidConfig", err)
	}
}
