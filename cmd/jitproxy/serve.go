package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/auth/devidp"
	"github.com/jitproxy/jitproxy/config"
	"github.com/jitproxy/jitproxy/configs"
)

func newServeCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the jitproxy server",
		Long: `Run the jitproxy server with a config file: the HTTP API (and login routes)
on server.api_listen, the store in storage.data_dir. Amendments that expired
while the server was down are expired first, before any listener opens.
SIGINT or SIGTERM shut it down gracefully. Check a file first with
jitproxy config check.`,
		Example: "  jitproxy serve --config /etc/jitproxy/jitproxy.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("say which config file with --config (start from configs/jitproxy.example.yaml)")
			}
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			for _, t := range cfg.Targets.SSH {
				if t.DevSSHD {
					return fmt.Errorf("%s: target %s is dev_sshd, which only jitproxy dev can serve", file, t.Name)
				}
			}
			for _, t := range cfg.Targets.Postgres {
				if t.DevPostgres {
					return fmt.Errorf("%s: target %s is dev_postgres, which only jitproxy dev can serve", file, t.Name)
				}
			}
			if len(cfg.DevIdP.Users) > 0 {
				return fmt.Errorf("%s: dev_idp users are only for jitproxy dev; serve logs people in through oidc.issuer", file)
			}
			log, err := newLogger(cfg.Log, os.Stderr)
			if err != nil {
				return err
			}
			return runServer(cmd.Context(), cfg, log, serverOptions{})
		},
	}
	c.Flags().StringVar(&file, "config", "", "the config file (YAML)")
	return c
}

func newDevCmd() *cobra.Command {
	var data, file string
	c := &cobra.Command{
		Use:   "dev [--data DIR]",
		Short: "Run the all-in-one demo: server, dev identity provider, embedded store",
		Long: `Run jitproxy with the dev config (configs/dev.yaml, embedded in the binary)
and an embedded OpenID Provider at http://127.0.0.1:8080/dev-idp whose users
are alice, bob and carol (password = user name). Everything is on 127.0.0.1
and kept in the data directory (default ./jitproxy-data): stop it and start
it again on the same directory and nothing is lost. Not for production.`,
		Example: "  jitproxy dev\n  jitproxy dev --data /tmp/jitproxy-demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				cfg *config.Config
				err error
			)
			if file != "" {
				cfg, err = config.Load(file)
			} else {
				var b []byte
				if b, err = configs.Files.ReadFile("dev.yaml"); err == nil {
					cfg, err = config.Parse(b, "dev.yaml")
				}
			}
			if err != nil {
				return err
			}
			if data != "" {
				if cfg.Storage.DataDir, err = filepath.Abs(data); err != nil {
					return err
				}
				cfg.Recordings.Dir = filepath.Join(cfg.Storage.DataDir, "recordings")
			}
			log, err := newLogger(cfg.Log, os.Stderr)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(cfg.DataDir(), 0o700); err != nil {
				return err
			}
			idpPath, err := devIdPPath(cfg)
			if err != nil {
				return err
			}
			idp, secret, err := newDevIdP(cfg, log)
			if err != nil {
				return err
			}
			return runServer(cmd.Context(), cfg, log, serverOptions{
				extra:        map[string]http.Handler{idpPath + "/": idp},
				clientSecret: secret,
				devTargets:   true,
				ready:        func(string) { printWalkthrough(cmd.OutOrStdout(), cfg) },
			})
		},
	}
	c.Flags().StringVar(&data, "data", "", "data directory (default ./jitproxy-data)")
	c.Flags().StringVar(&file, "config", "", "a dev config file instead of the embedded configs/dev.yaml")
	return c
}

// devIdPPath is the path of the dev IdP's issuer URL, e.g. /dev-idp.
func devIdPPath(cfg *config.Config) (string, error) {
	u, err := url.Parse(cfg.OIDC.Issuer)
	if err != nil || strings.Trim(u.Path, "/") == "" {
		return "", fmt.Errorf("oidc.issuer %q: jitproxy dev serves its identity provider under a path of the API, e.g. %s/dev-idp", cfg.OIDC.Issuer, cfg.Server.PublicURL)
	}
	return strings.TrimRight(u.Path, "/"), nil
}

// newDevIdP builds the embedded OpenID Provider with the dev config's users,
// and registers jitproxy as a confidential client with a secret made for
// this run (it never touches the disk).
func newDevIdP(cfg *config.Config, log zerolog.Logger) (http.Handler, string, error) {
	var users []devidp.User
	for i, u := range cfg.DevIdP.Users {
		pw, err := u.Password.Value()
		if err != nil {
			return nil, "", fmt.Errorf("dev_idp.users[%d].password: %w", i, err)
		}
		users = append(users, devidp.User{Username: u.Username, Password: pw, Email: u.Email, Name: u.Name, Groups: u.Groups})
	}
	secret := randomSecret()
	idp, err := devidp.New(devidp.Config{
		Issuer:  cfg.OIDC.Issuer,
		Users:   users,
		Clients: []devidp.Client{{ID: cfg.OIDC.ClientID, Secret: secret, RedirectURIs: []string{strings.TrimRight(cfg.Server.PublicURL, "/") + "/auth/callback"}}},
		KeyFile: filepath.Join(cfg.DataDir(), "dev-idp-key.pem"),
		Logger:  log.With().Str("component", "dev-idp").Logger(),
	})
	if err != nil {
		return nil, "", err
	}
	return idp, secret, nil
}

func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return base64.RawURLEncoding.EncodeToString(b)
}

func printWalkthrough(w io.Writer, cfg *config.Config) {
	base := strings.TrimRight(cfg.Server.PublicURL, "/")
	var sshTarget, sshLogin, dbTarget string
	for _, t := range cfg.Targets.SSH {
		if t.DevSSHD && t.Address != "" && len(t.Logins) > 0 {
			sshTarget, sshLogin = t.Name, t.Logins[0]
		}
	}
	for _, t := range cfg.Targets.Postgres {
		if t.DevPostgres && t.Address != "" {
			dbTarget = t.Name
		}
	}
	fmt.Fprintf(w, `
jitproxy dev is running on %[1]s (data in %[2]s).
The dev identity provider at %[3]s knows alice/alice (eng), bob/bob (sre-leads)
and carol/carol (security). In another terminal:

  go build -o jitproxy ./cmd/jitproxy && export JITPROXY_PROXY=%[1]s
  A="env JITPROXY_HOME=/tmp/alice ./jitproxy"; B="env JITPROXY_HOME=/tmp/bob ./jitproxy"

  $A login --no-browser     # open the URL it prints, sign in as alice / alice
  $B login --no-browser     # ... and as bob / bob
`, base, cfg.DataDir(), cfg.OIDC.Issuer)
	if sshTarget != "" {
		fmt.Fprintf(w, `
  # SSH: alice asks, bob approves, alice connects with stock ssh
  $A request %[1]s --login %[2]s --for 1h --reason "look at the logs"
  $B amendments --state requested --all
  $B approve ID
  $A ssh %[2]s@%[1]s               # recorded; or: $A ssh-config >> ~/.ssh/config
`, sshTarget, sshLogin)
	} else {
		fmt.Fprintln(w, "\n  (no demo SSH target: apt-get install openssh-server and restart to get one)")
	}
	if dbTarget != "" {
		fmt.Fprintf(w, `
  # PostgreSQL: read-only access is approved by policy; psql goes through jitproxy
  $A request %[1]s --role app_ro --for 1h --reason "check order 7"
  $A psql %[1]s -- -c 'select * from orders limit 3'
`, dbTarget)
	} else {
		fmt.Fprintln(w, "\n  (no demo database: apt-get install postgresql and restart to get one)")
	}
	fmt.Fprintf(w, `
  # bob ends it: live sessions are cut with one line saying why
  $B revoke ID --reason "done"
  ./jitproxy recordings --data %[1]s      # what happened, each sealed with its SHA-256
  ./jitproxy audit verify --data %[1]s    # the whole story, hash-chained

No browser here? Use login --device. Stop with Ctrl+C; start again on the
same data directory and everything is still there.

`, cfg.DataDir())
}
