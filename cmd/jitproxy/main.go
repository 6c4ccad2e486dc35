// Command jitproxy is the one binary of jitproxy: the server (serve, dev),
// its operator tools (config check, audit verify/export) and the client that
// engineers, approvers and auditors use (login, request, approve, ...).
//
// This package is the only place that reads flags and the environment; it
// wires the packages below and holds no policy of its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code through cobra without printing twice.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if err.Error() != "" {
		fmt.Fprintln(os.Stderr, "jitproxy: "+err.Error())
	}
	os.Exit(code)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "jitproxy",
		Short: "Just-in-time access to SSH and PostgreSQL, through time-boxed, approved amendments",
		Long: `jitproxy grants nobody standing access. You log in through your company's
identity provider, ask for time-boxed access to one target with a reason (an
amendment to the access contract), and once it is approved you reach the
target with stock ssh and psql through jitproxy. Every session is recorded and
every access action is sealed in a hash-chained audit trail.

Engineers:        jitproxy login; jitproxy request; jitproxy whoami
Approvers:        jitproxy amendments --state requested; jitproxy approve; deny; revoke
Security:         jitproxy audit verify; jitproxy audit export
Operators:        jitproxy serve --config FILE; jitproxy config check; jitproxy dev`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddGroup(
		&cobra.Group{ID: "client", Title: "Access (for engineers and approvers):"},
		&cobra.Group{ID: "server", Title: "Server and operations:"},
	)
	for _, c := range []*cobra.Command{
		newLoginCmd(), newLogoutCmd(), newWhoamiCmd(),
		newRequestCmd(), newAmendmentsCmd(), newShowCmd(),
		newApproveCmd(), newDenyCmd(), newRevokeCmd(), newExtendCmd(), newWithdrawCmd(),
		newTargetsCmd(), newCertsCmd(), newSSHConfigCmd(), newSSHCmd(), newSSHProxyCmd(),
		newDBTokenCmd(), newDBEnvCmd(), newPsqlCmd(),
	} {
		c.GroupID = "client"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newServeCmd(), newDevCmd(), newConfigCmd(), newAuditCmd(), newRecordingsCmd(), newReplayCmd(), newCACmd()} {
		c.GroupID = "server"
		root.AddCommand(c)
	}
	return root
}
