package recording

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeSidecar writes m to path atomically: a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so a
// reader (or a crash) sees the old sidecar or the new one, never half of
// one. The stored Path is the recording's file name: it sits beside its
// sidecar, so the tree can be moved.
func writeSidecar(path string, m Meta) error {
	m.Path = filepath.Base(m.Path)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("recording: encode %s metadata: %w", m.ID, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("recording: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("recording: write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename or create in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSidecar reads the sidecar at path and resolves its Path against the
// sidecar's directory.
func readSidecar(path string) (Meta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Meta{}, fmt.Errorf("recording: read %s: %w", path, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("recording: read %s: %w", path, err)
	}
	if m.Path == "" || m.Path != filepath.Base(m.Path) {
		return Meta{}, fmt.Errorf("recording: read %s: path %q is not a file name beside the sidecar", path, m.Path)
	}
	m.Path = filepath.Join(filepath.Dir(path), m.Path)
	return m, nil
}

// isSidecar reports whether name is a sidecar's file name (temporary files
// start with a dot).
func isSidecar(name string) bool {
	return strings.HasSuffix(name, sidecarSuffix) && !strings.HasPrefix(name, ".")
}
