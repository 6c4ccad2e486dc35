package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/api"
)

// dbToken asks the server for a database token for target.
func dbToken(ctx context.Context, f *clientFlags, target, database string) (*api.DBToken, error) {
	cl, err := f.newClient(true)
	if err != nil {
		return nil, err
	}
	var t api.DBToken
	if err := cl.do(ctx, "POST", "/api/v1/db/token", api.DBTokenBody{Target: target, Database: database}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// pgEnv is the libpq environment that connects to the endpoint with t.
func pgEnv(t *api.DBToken) []string {
	return []string{
		"PGHOST=" + t.Host,
		"PGPORT=" + strconv.Itoa(t.Port),
		"PGUSER=" + t.User,
		"PGDATABASE=" + t.DBName,
		"PGSSLMODE=" + t.SSLMode,
		"PGPASSWORD=" + t.Token,
	}
}

func newDBTokenCmd() *cobra.Command {
	var f clientFlags
	var database string
	c := &cobra.Command{
		Use:   "db-token TARGET",
		Short: "Print a short-lived token to use as the PostgreSQL password",
		Long: `Print a database token for TARGET: the password psql (or any PostgreSQL
driver) gives the jitproxy endpoint. It is bound to you, your active
amendment and TARGET, and never outlives the amendment.`,
		Example: `  PGPASSWORD=$(jitproxy db-token app-db) psql "host=127.0.0.1 port=5433 user=alice@example.com dbname=app-db sslmode=require"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := dbToken(cmd.Context(), &f, args[0], database)
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&database, "database", "", "the database (default: the amendment's)")
	return c
}

func newDBEnvCmd() *cobra.Command {
	var f clientFlags
	var database string
	c := &cobra.Command{
		Use:   "db-env TARGET",
		Short: "Print PGHOST=... lines for other PostgreSQL clients",
		Long: `Print the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE,
PGPASSWORD) that reaches TARGET through jitproxy, for clients other than psql.`,
		Example: "  eval \"$(jitproxy db-env app-db | sed 's/^/export /')\"",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := dbToken(cmd.Context(), &f, args[0], database)
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			for _, kv := range pgEnv(t) {
				fmt.Fprintln(cmd.OutOrStdout(), kv)
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&database, "database", "", "the database (default: the amendment's)")
	return c
}

func newPsqlCmd() *cobra.Command {
	var f clientFlags
	var database string
	c := &cobra.Command{
		Use:   "psql TARGET [--database DB] [-- psql arguments]",
		Short: "Run psql on a PostgreSQL target through jitproxy",
		Long: `Get a database token and run psql with the environment that reaches TARGET
through jitproxy. Arguments after -- go to psql.`,
		Example: "  jitproxy psql app-db\n  jitproxy psql app-db --database reports -- -c 'select count(*) from orders'",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := dbToken(cmd.Context(), &f, args[0], database)
			if err != nil {
				return err
			}
			psql, err := exec.LookPath("psql")
			if err != nil {
				return fmt.Errorf("psql is not installed (apt-get install postgresql-client): %w", err)
			}
			return syscall.Exec(psql, append([]string{"psql"}, args[1:]...), append(os.Environ(), pgEnv(t)...))
		},
	}
	f.register(c)
	c.Flags().StringVar(&database, "database", "", "the database (default: the amendment's)")
	return c
}
