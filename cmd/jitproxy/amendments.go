package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
)

// status is a short human description of where the amendment stands.
func status(a *api.Amendment, now time.Time) string {
	switch a.State {
	case "requested":
		return fmt.Sprintf("waiting for approval (%d of %d)", len(a.Approvals), a.RequiredApprovals)
	case "approved":
		if !a.StartAt.IsZero() {
			return "starts " + a.StartAt.Local().Format("2006-01-02 15:04")
		}
		return "approved"
	case "active":
		if !a.ExpiresAt.IsZero() {
			return amendment.FormatDuration(a.ExpiresAt.Sub(now).Round(time.Second)) + " left"
		}
	case "revoked", "denied", "withdrawn":
		if a.EndedBy != "" {
			return "by " + a.EndedBy + ": " + a.EndReason
		}
	}
	return ""
}

func printAmendments(w io.Writer, list []api.Amendment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tACCESS\tFOR\tSTATUS")
	now := time.Now()
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ShortID, a.State, a.Requester, a.Resource, a.Duration, status(&a, now))
	}
	tw.Flush()
}

func printAmendment(w io.Writer, a *api.Amendment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format(time.RFC3339)
	}
	row("Amendment", a.ID)
	row("State", string(a.State)+"  "+status(a, time.Now()))
	row("Requester", a.Requester)
	row("Access", a.Resource)
	if a.PortForwarding {
		row("Port forwarding", "allowed")
	}
	if a.ReadOnly {
		row("Read-only", "yes")
	}
	row("Duration", a.Duration)
	row("Reason", a.Reason)
	row("Ticket", a.Ticket)
	row("Rule", a.Rule)
	row("Requested", a.CreatedAt.Local().Format(time.RFC3339))
	row("Starts", ts(a.StartAt))
	row("Active from", ts(a.ActivatedAt))
	row("Expires", ts(a.ExpiresAt))
	row("Ended", ts(a.EndedAt))
	for _, ap := range a.Approvals {
		v := ap.By + " at " + ap.At.Local().Format(time.RFC3339)
		if ap.Comment != "" {
			v += ": " + ap.Comment
		}
		row("Approved by", v)
	}
	for _, e := range a.Extensions {
		v := "+" + e.Duration + " by " + e.RequestedBy + ": " + e.Reason
		if e.Pending {
			v += " (waiting for approval)"
		}
		row("Extension", v)
	}
	tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRequestCmd() *cobra.Command {
	var f clientFlags
	var in struct {
		Login, Role, Database, For, Reason, Ticket, Start string
		PortForwarding, ReadOnly, Wait                    bool
		WaitTimeout                                       time.Duration
	}
	c := &cobra.Command{
		Use:   "request TARGET (--login LOGIN | --role ROLE [--database DB]) --for DURATION --reason TEXT",
		Short: "Ask for time-boxed access to one target",
		Long: `Ask for time-boxed access to one target: an SSH login, or a PostgreSQL role
(and database). The contract decides whether the request needs approval; the
answer names the rule that applies. Prints the amendment's id and state.`,
		Example: `  jitproxy request web-1 --login ubuntu --for 2h --reason "deploy hotfix" --ticket OPS-42
  jitproxy request app-db --role app_ro --database app --for 30m --reason "check order 1234" --wait
  jitproxy request web-1 --login ubuntu --for 1h --reason "maintenance" --start 2026-12-01T22:00:00Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if in.For == "" {
				return fmt.Errorf("say for how long with --for (e.g. --for 2h)")
			}
			if _, err := amendment.ParseDuration(in.For); err != nil {
				return fmt.Errorf("--for: %w", err)
			}
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			body := map[string]any{
				"target": args[0], "login": in.Login, "role": in.Role, "database": in.Database,
				"duration": in.For, "reason": in.Reason, "ticket": in.Ticket,
				"port_forwarding": in.PortForwarding, "read_only": in.ReadOnly,
			}
			if in.Start != "" {
				body["start"] = in.Start
			}
			var a api.Amendment
			if err := cl.do(cmd.Context(), "POST", "/api/v1/amendments", body, &a); err != nil {
				return err
			}
			if in.Wait && a.State == "requested" {
				if !f.json {
					fmt.Fprintf(cmd.ErrOrStderr(), "amendment %s requested; waiting for approval (%d needed)...\n", a.ShortID, a.RequiredApprovals)
				}
				if err := waitDecision(cmd, cl, &a, in.WaitTimeout); err != nil {
					return err
				}
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s  %s\n", a.ShortID, a.State, a.Resource, status(&a, time.Now()))
			if in.Wait && a.State != "active" && a.State != "approved" {
				return &exitError{code: 2, msg: fmt.Sprintf("amendment %s was %s", a.ShortID, a.State)}
			}
			return nil
		},
	}
	f.register(c)
	fl := c.Flags()
	fl.StringVar(&in.Login, "login", "", "SSH login on the target")
	fl.StringVar(&in.Role, "role", "", "PostgreSQL role on the target")
	fl.StringVar(&in.Database, "database", "", "PostgreSQL database (default: the only one the rule allows)")
	fl.StringVar(&in.For, "for", "", "how long the access lasts once active, e.g. 30m, 2h, 1d")
	fl.StringVar(&in.Reason, "reason", "", "why you need it (shown to approvers, kept in the audit trail)")
	fl.StringVar(&in.Ticket, "ticket", "", "ticket id, if the rule asks for one")
	fl.StringVar(&in.Start, "start", "", "scheduled start: an RFC 3339 time or +DURATION from now (default: when approved)")
	fl.BoolVar(&in.PortForwarding, "port-forwarding", false, "ask for SSH port forwarding too (if the rule allows it)")
	fl.BoolVar(&in.ReadOnly, "read-only", false, "ask for read-only PostgreSQL sessions")
	fl.BoolVar(&in.Wait, "wait", false, "wait until the request is approved, denied or expires, and say which")
	fl.DurationVar(&in.WaitTimeout, "wait-timeout", 0, "with --wait, give up after this long (default: until the request expires)")
	return c
}

// waitDecision polls until a leaves the requested state.
func waitDecision(cmd *cobra.Command, cl *client, a *api.Amendment, timeout time.Duration) error {
	ctx := cmd.Context()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for a.State == "requested" {
		select {
		case <-ctx.Done():
			return &exitError{code: 130, msg: "stopped waiting; amendment " + a.ShortID + " is still requested"}
		case <-deadline:
			return &exitError{code: 2, msg: "gave up waiting; amendment " + a.ShortID + " is still requested"}
		case <-tick.C:
		}
		if err := cl.do(ctx, "GET", "/api/v1/amendments/"+url.PathEscape(a.ID), nil, a); err != nil {
			return err
		}
	}
	return nil
}

func newAmendmentsCmd() *cobra.Command {
	var f clientFlags
	var states []string
	var all bool
	var requester, target string
	var limit int
	c := &cobra.Command{
		Use:     "amendments",
		Aliases: []string{"list", "ls"},
		Short:   "List amendments: yours, or those you may approve or audit",
		Long: `List amendments you may see, newest first: by default your own open ones
(requested, approved, active). --all lists every state; approvers and auditors
see others' amendments too.`,
		Example: `  jitproxy amendments
  jitproxy amendments --state requested --all      # what waits for an approver
  jitproxy amendments --all --target web-1 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, s := range states {
				q.Add("state", s)
			}
			if len(states) == 0 && !all {
				for _, s := range []string{"requested", "approved", "active"} {
					q.Add("state", s)
				}
			}
			if requester != "" {
				q.Set("requester", requester)
			} else if !all {
				q.Set("requester", "me")
			}
			if target != "" {
				q.Set("target", target)
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			var out api.AmendmentList
			if err := cl.do(cmd.Context(), "GET", "/api/v1/amendments?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			if len(out.Amendments) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no amendments")
				return nil
			}
			printAmendments(cmd.OutOrStdout(), out.Amendments)
			return nil
		},
	}
	f.register(c)
	c.Flags().StringSliceVar(&states, "state", nil, "only these states (requested, approved, active, expired, revoked, denied, withdrawn); repeatable")
	c.Flags().BoolVar(&all, "all", false, "every state, and everyone's amendments you may see")
	c.Flags().StringVar(&requester, "requester", "", "only this requester's (email, or me)")
	c.Flags().StringVar(&target, "target", "", "only this target's")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many")
	return c
}

func newShowCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show one amendment in full",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var a api.Amendment
			if err := cl.do(cmd.Context(), "GET", "/api/v1/amendments/"+url.PathEscape(args[0]), nil, &a); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			printAmendment(cmd.OutOrStdout(), &a)
			return nil
		},
	}
	f.register(c)
	return c
}

// newActionCmd builds approve, deny, revoke and withdraw: a POST to
// /api/v1/amendments/ID/ACTION with a comment or reason.
func newActionCmd(action, short, long, field string, required bool) *cobra.Command {
	var f clientFlags
	var text string
	flag := "reason"
	if field == "comment" {
		flag = "comment"
	}
	use := action + " ID"
	if required {
		use += " --" + flag + " TEXT"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if required && strings.TrimSpace(text) == "" {
				return fmt.Errorf("say why with --%s", flag)
			}
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var a api.Amendment
			if err := cl.do(cmd.Context(), "POST", "/api/v1/amendments/"+url.PathEscape(args[0])+"/"+action, map[string]string{field: text}, &a); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s  %s\n", a.ShortID, a.State, a.Resource, status(&a, time.Now()))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&text, flag, "", flag+" (kept in the audit trail)")
	return c
}

func newApproveCmd() *cobra.Command {
	return newActionCmd("approve", "Approve someone's request (or their pending extension)",
		"Approve a request you are an approver for. You can never approve your own.\nWhen enough approvers have said yes, the amendment becomes active (or waits for its scheduled start).",
		"comment", false)
}

func newDenyCmd() *cobra.Command {
	return newActionCmd("deny", "Deny a request (or a pending extension)",
		"Deny a request you are an approver for; a denied extension leaves the amendment active until its current expiry.",
		"reason", true)
}

func newRevokeCmd() *cobra.Command {
	return newActionCmd("revoke", "End an approved or active amendment now",
		"End an approved or active amendment now: every session riding on it is cut.\nThe requester (giving access back early), its approvers and admins may revoke.",
		"reason", true)
}

func newWithdrawCmd() *cobra.Command {
	return newActionCmd("withdraw", "Withdraw your own pending request",
		"Withdraw a request of yours that has not been decided yet.",
		"reason", false)
}

func newExtendCmd() *cobra.Command {
	var f clientFlags
	var forDur, reason string
	c := &cobra.Command{
		Use:   "extend ID --for DURATION --reason TEXT",
		Short: "Ask to extend your active amendment",
		Long: `Ask to move your active amendment's expiry by DURATION. The whole window stays
within the rule's maximum; if the rule demands it, approvers must approve the
extension (jitproxy approve ID). Live sessions keep running either way.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if forDur == "" {
				return fmt.Errorf("say by how much with --for (e.g. --for 30m)")
			}
			if _, err := amendment.ParseDuration(forDur); err != nil {
				return fmt.Errorf("--for: %w", err)
			}
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var a api.Amendment
			if err := cl.do(cmd.Context(), "POST", "/api/v1/amendments/"+url.PathEscape(args[0])+"/extend", map[string]string{"duration": forDur, "reason": reason}, &a); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			msg := status(&a, time.Now())
			if n := len(a.Extensions); n > 0 && a.Extensions[n-1].Pending {
				msg = "extension waiting for approval; " + msg
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s  %s\n", a.ShortID, a.State, a.Resource, msg)
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&forDur, "for", "", "how much longer, e.g. 30m")
	c.Flags().StringVar(&reason, "reason", "", "why (kept in the audit trail)")
	return c
}

func newWhoamiCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "whoami",
		Short: "Show who you are logged in as, your groups and your amendments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var out api.Whoami
			if err := cl.do(cmd.Context(), "GET", "/api/v1/whoami", nil, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			name := out.Identity.Email
			if out.Identity.Name != "" {
				name = out.Identity.Name + " <" + out.Identity.Email + ">"
			}
			fmt.Fprintf(w, "Logged in to %s as %s\n", cl.base, name)
			fmt.Fprintf(w, "Groups: %s\n", strings.Join(out.Identity.Groups, ", "))
			if len(out.Amendments) == 0 {
				fmt.Fprintln(w, "No active or pending amendments: ask with jitproxy request TARGET ...")
				return nil
			}
			fmt.Fprintln(w)
			printAmendments(w, out.Amendments)
			return nil
		},
	}
	f.register(c)
	return c
}

func newTargetsCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "targets",
		Short: "List the targets you may request access to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(true)
			if err != nil {
				return err
			}
			var t api.Targets
			if err := cl.do(cmd.Context(), "GET", "/api/v1/targets", nil, &t); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			if len(t.Targets) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no target you may request: ask your jitproxy admin")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tKIND\tOFFERS\tRULES")
			for _, v := range t.Targets {
				offers := strings.Join(v.Logins, ",")
				if v.Kind == amendment.KindPostgres {
					offers = strings.Join(v.Roles, ",")
					if len(v.Databases) > 0 {
						offers += " on " + strings.Join(v.Databases, ",")
					}
				}
				if offers == "" {
					offers = "any"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.Kind, offers, strings.Join(v.Rules, ","))
			}
			return tw.Flush()
		},
	}
	f.register(c)
	return c
}
