package recording

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"slices"
)

// RecoverIncomplete finds every recording whose sidecar still says open
// although no Recorder is writing it (the proxy stopped without closing
// it), and seals it as it is on disk: State incomplete, End the file's
// modification time, EndReason EndReasonCrashed, Bytes and SHA256 of the
// file. The file itself is left as it is, a cut-short last line included.
// It returns those recordings oldest first, for the caller to write audit
// rows. Call it at start, before starting recordings; recordings this
// Recorder has open are skipped. A recording that cannot be sealed does
// not stop the others: the error names it.
func (r *Recorder) RecoverIncomplete() ([]Meta, error) {
	ms, err := list(r.dir, func(string) bool { return true })
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var out []Meta
	for _, m := range ms {
		if m.State != StateOpen {
			continue
		}
		sidecar := m.Path + sidecarSuffix
		if r.isOpen(sidecar) {
			continue
		}
		m.State = StateIncomplete
		m.EndReason = EndReasonCrashed
		fi, err := os.Stat(m.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			m.EndReason += "; the recording file is missing"
			m.Bytes, m.SHA256 = 0, ""
			if si, err := os.Stat(sidecar); err == nil {
				m.End = si.ModTime().UTC()
			}
		case err != nil:
			errs = append(errs, err)
			continue
		default:
			sum, n, err := hashFile(m.Path)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			m.End, m.Bytes, m.SHA256 = fi.ModTime().UTC(), n, sum
		}
		if err := writeSidecar(sidecar, m); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Warn().Str("recording", m.ID).Str("session", m.Session).Int64("bytes", m.Bytes).
			Msg("recording was not closed: sealed as incomplete")
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, errors.Join(errs...)
}
