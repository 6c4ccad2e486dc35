package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/config"
	"github.com/jitproxy/jitproxy/recording"
)

// recordingsDir resolves --data / --config / --dir to the recordings
// directory.
func recordingsDir(data, cfgFile, dir string) (string, error) {
	switch {
	case dir != "":
		return dir, nil
	case cfgFile != "":
		cfg, err := config.Load(cfgFile)
		if err != nil {
			return "", err
		}
		return cfg.Recordings.Dir, nil
	case data != "":
		return filepath.Join(data, "recordings"), nil
	}
	return "", fmt.Errorf("say where the recordings are: --data DIR, --config FILE or --dir DIR")
}

func newRecordingsCmd() *cobra.Command {
	var data, cfgFile, dir, person, target string
	var jsonOut bool
	c := &cobra.Command{
		Use:   "recordings",
		Short: "List session recordings, newest first, and check their hashes",
		Long: `List the recordings in a data directory (or a recordings directory copied
off a server), newest first, with who, what, how the session ended, and
whether the file still matches the SHA-256 sealed when it was closed.`,
		Example: "  jitproxy recordings --data ./jitproxy-data\n  jitproxy recordings --dir /evidence/recordings --person alice@example.com",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := recordingsDir(data, cfgFile, dir)
			if err != nil {
				return err
			}
			list, err := recording.List(d)
			if err != nil {
				return err
			}
			var out []recording.Meta
			for _, m := range list {
				if (person == "" || m.Person == person) && (target == "" || m.Target == target) {
					out = append(out, m)
				}
			}
			if jsonOut {
				return printJSON(cmd.OutOrStdout(), out)
			}
			if len(out) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no recordings")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tSTART\tPERSON\tACCESS\tCOMMAND\tENDED\tHASH")
			for _, m := range out {
				access := m.Login + "@" + m.Target
				if m.Kind == "postgres" {
					access = m.Role + "@" + m.Target + "/" + m.Database
				}
				hash := "ok"
				switch {
				case m.State != "closed":
					hash = m.State
				case recording.VerifyFile(m) != nil:
					hash = "MISMATCH"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Start.Local().Format("2006-01-02 15:04:05"), m.Person, access, m.Command, m.EndReason, hash)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&data, "data", "", "the data directory (recordings are in DATA/recordings)")
	c.Flags().StringVar(&cfgFile, "config", "", "the config file naming the recordings directory")
	c.Flags().StringVar(&dir, "dir", "", "a recordings directory")
	c.Flags().StringVar(&person, "person", "", "only this person's")
	c.Flags().StringVar(&target, "target", "", "only this target's")
	c.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	c.AddCommand(newRecordingsExportCmd())
	return c
}

func newRecordingsExportCmd() *cobra.Command {
	var data, cfgFile, dir, out string
	c := &cobra.Command{
		Use:   "export RECORDING",
		Short: "Write one recording as a plain asciicast or JSON-lines file",
		Long: `Write the recording RECORDING (SESSION-CHANNEL for SSH, SESSION for
PostgreSQL, or a session id that has one recording) as plain text:
asciicast v2 for SSH, which asciinema play reads, and JSON lines for
PostgreSQL. Recordings are stored zstd-compressed unless
recordings.compression is none; the export is the same either way.

The file is checked against its sealed SHA-256 first, and a mismatch is
an error. A recording the proxy did not close (incomplete) is written up
to where it stops, with a warning.`,
		Example: "  jitproxy recordings export 3f9a0c1d2e4b5a67-0 --data ./jitproxy-data > session.cast\n  asciinema play session.cast",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := recordingsDir(data, cfgFile, dir)
			if err != nil {
				return err
			}
			m, err := findRecording(d, args[0])
			if err != nil {
				return err
			}
			if err := recording.VerifyFile(m); err != nil && m.State == recording.StateClosed {
				return &exitError{code: 1, msg: fmt.Sprintf("recording %s does not match its sealed hash: %v", m.ID, err)}
			}
			if m.State != recording.StateClosed {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: recording %s is %s (%s); exporting what it holds\n", m.ID, m.State, m.EndReason)
			}
			src, err := recording.Open(m.Path)
			if err != nil {
				return err
			}
			defer src.Close()
			w := cmd.OutOrStdout()
			var f *os.File
			if out != "" && out != "-" {
				f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%s exists: remove it or name another file with -o", out)
				}
				if err != nil {
					return err
				}
				w = f
			}
			_, err = io.Copy(w, src)
			if errors.Is(err, recording.ErrTruncated) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: recording %s ends in a cut-short write; exported everything before it\n", m.ID)
				err = nil
			}
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				if f != nil {
					os.Remove(out) // not a partial file that looks whole
				}
				return fmt.Errorf("export %s: %w", m.ID, err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "", "the data directory (recordings are in DATA/recordings)")
	c.Flags().StringVar(&cfgFile, "config", "", "the config file naming the recordings directory")
	c.Flags().StringVar(&dir, "dir", "", "a recordings directory")
	c.Flags().StringVarP(&out, "output", "o", "", "write to this new file (mode 0600) instead of standard output")
	return c
}

// findRecording finds the recording with ID id, or the only recording of
// the session id.
func findRecording(dir, id string) (recording.Meta, error) {
	session, _, _ := strings.Cut(id, "-")
	found, err := recording.Find(dir, session)
	if err != nil && len(found) == 0 {
		return recording.Meta{}, err
	}
	var match []recording.Meta
	for _, m := range found {
		if m.ID == id {
			return m, nil
		}
		if m.Session == id {
			match = append(match, m)
		}
	}
	switch len(match) {
	case 0:
		return recording.Meta{}, fmt.Errorf("no recording %s in %s (jitproxy recordings lists them)", id, dir)
	case 1:
		return match[0], nil
	}
	var ids []string
	for _, m := range match {
		ids = append(ids, m.ID)
	}
	return recording.Meta{}, fmt.Errorf("session %s has %d recordings (%s): name one", id, len(match), strings.Join(ids, ", "))
}

func newReplayCmd() *cobra.Command {
	var data, cfgFile, dir string
	var speed float64
	var idle time.Duration
	c := &cobra.Command{
		Use:   "replay SESSION",
		Short: "Play an SSH session recording in the terminal, with its original timing",
		Long: `Play the recording of SESSION (a session id, or SESSION-CHANNEL for one
channel) in this terminal with its original timing. The file is checked
against its sealed SHA-256 first. To play one in asciinema, export it:
jitproxy recordings export SESSION-CHANNEL > x.cast; asciinema play x.cast.`,
		Example: "  jitproxy replay 3f9a0c1d2e4b5a67 --data ./jitproxy-data --speed 2 --idle-limit 2s",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := recordingsDir(data, cfgFile, dir)
			if err != nil {
				return err
			}
			session, _, _ := strings.Cut(args[0], "-")
			found, err := recording.Find(d, session)
			if err != nil {
				return err
			}
			for _, m := range found {
				if m.Kind != "ssh" || (strings.Contains(args[0], "-") && m.ID != args[0]) {
					continue
				}
				if err := recording.VerifyFile(m); err != nil && m.State == "closed" {
					return &exitError{code: 1, msg: fmt.Sprintf("recording %s does not match its sealed hash: %v", m.ID, err)}
				}
				f, err := os.Open(m.Path)
				if err != nil {
					return err
				}
				_, events := recording.ReadCast(f)
				err = recording.Play(cmd.Context(), cmd.OutOrStdout(), events, recording.PlayOptions{Speed: speed, IdleLimit: idle})
				f.Close()
				if err != nil && !errors.Is(err, recording.ErrTruncated) {
					return err
				}
			}
			if len(found) == 0 {
				return fmt.Errorf("no recording of session %s in %s", args[0], d)
			}
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "", "the data directory (recordings are in DATA/recordings)")
	c.Flags().StringVar(&cfgFile, "config", "", "the config file naming the recordings directory")
	c.Flags().StringVar(&dir, "dir", "", "a recordings directory")
	c.Flags().Float64Var(&speed, "speed", 1, "play this many times faster")
	c.Flags().DurationVar(&idle, "idle-limit", 0, "cap every pause at this long (0: as recorded)")
	return c
}
