package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/config"
)

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Check a configuration file",
	}
	var file string
	check := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a config file: every error with its field path and line",
		Long: `Load and validate a config file the way serve would, without starting
anything. Prints every problem as FILE:LINE: field.path: message and exits 1,
or prints a one-line summary and exits 0.`,
		Example: "  jitproxy config check --config /etc/jitproxy/jitproxy.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("say which file with --config")
			}
			cfg, err := config.Load(file)
			if err != nil {
				var errs config.Errors
				if errors.As(err, &errs) {
					for _, e := range errs {
						fmt.Fprintln(cmd.OutOrStdout(), e.Error())
					}
					return &exitError{code: 1, msg: fmt.Sprintf("%s: %d error(s)", file, len(errs))}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %s\n", file, cfg.Summary())
			return nil
		},
	}
	check.Flags().StringVar(&file, "config", "", "the config file to check")
	c.AddCommand(check)
	return c
}
