package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelp runs `jitproxy CMD --help` for every command: each describes
// itself and every one of its flags.
func TestHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	var n int
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub)
		}
		n++
		path := strings.Fields(c.CommandPath())[1:]
		t.Run(strings.Join(append([]string{"jitproxy"}, path...), " "), func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(path, "--help"))
			if err := root.Execute(); err != nil {
				t.Fatalf("--help: %v", err)
			}
			help := out.String()
			if c.Short == "" {
				t.Errorf("%s has no short description", c.CommandPath())
			}
			if !strings.Contains(help, "Usage:") {
				t.Errorf("help has no usage:\n%s", help)
			}
			c.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if f.Usage == "" {
					t.Errorf("flag --%s has no description", f.Name)
				}
				if !strings.Contains(help, "--"+f.Name) {
					t.Errorf("help does not mention --%s:\n%s", f.Name, help)
				}
			})
		})
	}
	walk(newRootCmd())
	if n < 15 {
		t.Errorf("walked %d commands; want every command (at least 15)", n)
	}
}
