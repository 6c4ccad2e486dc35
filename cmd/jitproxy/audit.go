package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/audit"
	"github.com/jitproxy/jitproxy/config"
	"github.com/jitproxy/jitproxy/store"
)

// dbFileName is the SQLite store's file inside the data directory.
const dbFileName = "jitproxy.db"

// auditSource says where the audit trail is read from: a local data
// directory (operators, or an auditor with a copy) or a server (auditors).
type auditSource struct {
	data   string
	config string
	client clientFlags
}

func (s *auditSource) register(c *cobra.Command) {
	c.Flags().StringVar(&s.data, "data", "", "read the trail from this local data directory instead of a server")
	c.Flags().StringVar(&s.config, "config", "", "read the trail from the data directory this config file names")
	s.client.register(c)
}

// events yields the trail in stored order from the chosen source.
func (s *auditSource) events(ctx context.Context, after int64) (iter.Seq2[audit.Event, error], func(), error) {
	dir := s.data
	if dir == "" && s.config != "" {
		cfg, err := config.Load(s.config)
		if err != nil {
			return nil, nil, err
		}
		dir = cfg.DataDir()
	}
	if dir != "" {
		path := filepath.Join(dir, dbFileName)
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("no jitproxy store in %s: %w", dir, err)
		}
		st, err := store.OpenSQLite(ctx, store.SQLiteConfig{Path: path})
		if err != nil {
			return nil, nil, err
		}
		return st.AuditEvents(ctx, after), func() { st.Close() }, nil
	}
	cl, err := s.client.newClient(true)
	if err != nil {
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(cl.do(ctx, "GET", "/api/v1/audit?after="+url.QueryEscape(strconv.FormatInt(after, 10)), nil, pw))
	}()
	seq := func(yield func(audit.Event, error) bool) {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				yield(audit.Event{}, fmt.Errorf("the server sent a line that is not an audit event: %w", err))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(audit.Event{}, err)
		}
	}
	return seq, func() { pr.Close() }, nil
}

func newAuditCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the hash-chained audit trail",
		Long: `Every access action (amendment transitions, logins, certificates, sessions,
recordings) is one row of the audit trail, chained by SHA-256 to the row
before. Read it from a server you are an auditor of (--proxy, after jitproxy
login) or from a local data directory (--data DIR).`,
	}
	c.AddCommand(newAuditVerifyCmd(), newAuditExportCmd())
	return c
}

func newAuditVerifyCmd() *cobra.Command {
	var src auditSource
	var expectHead string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain and name the first broken row",
		Long: `Recompute the audit trail's hash chain. Exits 0 and prints the head (last
seq and hash) when the trail is intact; exits 1 naming the first row that was
edited, deleted, inserted or reordered. A chain cannot show that rows were
cut off its end: keep the head this command prints and pass it back with
--expect-head to prove the trail still contains it.`,
		Example: `  jitproxy audit verify --data ./jitproxy-data
  jitproxy audit verify --proxy https://jitproxy.example.com --expect-head 1042:3f9a...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var wantSeq int64
			var wantHash string
			if expectHead != "" {
				s, h, ok := strings.Cut(expectHead, ":")
				n, err := strconv.ParseInt(s, 10, 64)
				if !ok || err != nil || len(h) != 64 {
					return fmt.Errorf("--expect-head takes SEQ:HASH as verify printed it, e.g. 1042:3f9a...")
				}
				wantSeq, wantHash = n, h
			}
			events, done, err := src.events(cmd.Context(), 0)
			if err != nil {
				return err
			}
			defer done()
			v := audit.NewVerifier()
			headOK := wantHash == ""
			for e, err := range events {
				if err != nil {
					return err
				}
				if err := v.Next(e); err != nil {
					var be *audit.BreakError
					if errors.As(err, &be) {
						return &exitError{code: 1, msg: be.Error()}
					}
					return err
				}
				if e.Seq == wantSeq && e.Hash == wantHash {
					headOK = true
				}
			}
			sum := v.Summary()
			if !headOK {
				return &exitError{code: 1, msg: fmt.Sprintf("audit trail does not contain the expected head %s: rows were removed from its end or it is another trail (it has %d events, head %d:%s)", expectHead, sum.Events, sum.LastSeq, sum.Head)}
			}
			if src.client.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"ok": true, "events": sum.Events, "last_seq": sum.LastSeq, "head": sum.Head})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit trail intact: %d events, head %d:%s\n", sum.Events, sum.LastSeq, sum.Head)
			return nil
		},
	}
	src.register(c)
	c.Flags().StringVar(&expectHead, "expect-head", "", "SEQ:HASH of a head printed earlier that the trail must still contain")
	return c
}

func newAuditExportCmd() *cobra.Command {
	var src auditSource
	var after int64
	var out string
	c := &cobra.Command{
		Use:   "export",
		Short: "Write the audit trail as JSON lines",
		Long: `Write the audit trail as JSON lines, one event per line, in order (for a SIEM
or an evidence archive). Each line carries its prev_hash and hash, so the
export can be verified again later.`,
		Example: `  jitproxy audit export --data ./jitproxy-data > audit.jsonl
  jitproxy audit export --after 1000 -o new-events.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			events, done, err := src.events(cmd.Context(), after)
			if err != nil {
				return err
			}
			defer done()
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriter(w)
			n, err := audit.Export(bw, events)
			if err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d events to %s\n", n, out)
			}
			return nil
		},
	}
	src.register(c)
	c.Flags().Int64Var(&after, "after", 0, "only events with seq greater than this")
	c.Flags().StringVarP(&out, "output", "o", "", "write to this file (mode 0600) instead of standard output")
	return c
}
