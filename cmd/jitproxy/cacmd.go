package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/config"
)

func newCACmd() *cobra.Command {
	var file, data string
	var hosts bool
	c := &cobra.Command{
		Use:   "ca --config FILE",
		Short: "Print the user CA keys targets' sshd must trust (or the host CA known_hosts lines)",
		Long: `Print the public keys of jitproxy's SSH user CA (current and rotation keys),
one per line: the contents of the TrustedUserCAKeys file of every target's
sshd. With --known-hosts, print the @cert-authority lines for jitproxy's host
CA instead. The keys are made on first start if they do not exist yet.`,
		Example: "  jitproxy ca --config /etc/jitproxy/jitproxy.yaml | ssh root@web-1 'cat > /etc/ssh/jitproxy_user_ca.pub'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("say which config with --config")
			}
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			if data != "" {
				if cfg.Storage.DataDir, err = filepath.Abs(data); err != nil {
					return err
				}
			}
			a, err := newAuthority(cfg)
			if err != nil {
				return err
			}
			if hosts {
				for _, l := range a.KnownHosts("*") {
					fmt.Fprintln(cmd.OutOrStdout(), l)
				}
				return nil
			}
			_, err = cmd.OutOrStdout().Write(a.TrustedUserCAKeys())
			return err
		},
	}
	c.Flags().StringVar(&file, "config", "", "the server's config file")
	c.Flags().StringVar(&data, "data", "", "the data directory, if not the config's")
	c.Flags().BoolVar(&hosts, "known-hosts", false, "print the host CA's @cert-authority lines instead")
	return c
}
