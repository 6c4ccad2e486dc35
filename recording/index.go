package recording

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// List reads every sidecar under dir, newest first (by Start, then ID). A
// sidecar that cannot be read does not hide the others: List returns every
// one it could read, and an error naming those it could not.
func List(dir string) ([]Meta, error) {
	return list(dir, func(string) bool { return true })
}

// Find returns the recordings of one session under dir, newest first, with
// List's error semantics.
func Find(dir, session string) ([]Meta, error) {
	if !validID(session) {
		return nil, fmt.Errorf("recording: session ID %q: use letters, digits, '.', '_' and '-'", session)
	}
	// File names start with the session ID, then '-' (ssh) or '.' (postgres);
	// a longer session ID with the same prefix is filtered out below.
	ms, err := list(dir, func(name string) bool {
		rest, ok := strings.CutPrefix(name, session)
		return ok && (strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "."))
	})
	ms = slices.DeleteFunc(ms, func(m Meta) bool { return m.Session != session })
	return ms, err
}

// list reads the sidecars under dir whose file names match, newest first.
func list(dir string, match func(name string) bool) ([]Meta, error) {
	var (
		ms   []Meta
		errs []error
	)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			errs = append(errs, fmt.Errorf("recording: list %s: %w", path, err))
			return nil
		}
		if d.IsDir() || !isSidecar(d.Name()) || !match(d.Name()) {
			return nil
		}
		m, err := readSidecar(path)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		ms = append(ms, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording: list %s: %w", dir, err)
	}
	slices.SortFunc(ms, func(a, b Meta) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return ms, errors.Join(errs...)
}

// VerifyFile recomputes the SHA-256 and size of the recording file m
// names and compares them with m's. It returns nil when they match,
// ErrMismatch when they do not, and ErrNotSealed for an open recording.
func VerifyFile(m Meta) error {
	if m.State == StateOpen || m.SHA256 == "" {
		return fmt.Errorf("%w: %s", ErrNotSealed, m.ID)
	}
	sum, n, err := hashFile(m.Path)
	if err != nil {
		return err
	}
	if n != m.Bytes || sum != m.SHA256 {
		return fmt.Errorf("%w: %s holds %d bytes with SHA-256 %s; its metadata says %d bytes with SHA-256 %s",
			ErrMismatch, m.Path, n, sum, m.Bytes, m.SHA256)
	}
	return nil
}

// hashFile returns the hex SHA-256 and the size of the file at path.
func hashFile(path string) (sum string, n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("recording: verify: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err = io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("recording: verify %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
