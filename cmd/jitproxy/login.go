package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jitproxy/jitproxy/auth"
)

func newLoginCmd() *cobra.Command {
	var f clientFlags
	var noBrowser, device bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "login",
		Short: "Log in through your identity provider",
		Long: `Log in through your company's identity provider. By default it opens your
browser (authorization code with PKCE, redirected back to a listener on
127.0.0.1); --no-browser prints the URL to open instead, and --device uses
the device grant for machines with no browser at all. jitproxy keeps only its
own session token, in $JITPROXY_HOME (default ~/.jitproxy) with mode 0600:
never your identity provider's tokens.`,
		Example: `  jitproxy login --proxy https://jitproxy.example.com
  jitproxy login --no-browser
  jitproxy login --device`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			saved, err := loadLogin()
			if err != nil {
				saved = nil // a damaged file is replaced by this login
			}
			base := f.proxyURL(saved)
			lc := auth.LoginConfig{ProxyURL: base, Out: cmd.ErrOrStderr(), Timeout: timeout}
			if !noBrowser && !device {
				lc.OpenBrowser = openBrowser
			}
			var tr auth.TokenResponse
			if device {
				tr, err = auth.LoginDevice(cmd.Context(), lc)
			} else {
				tr, err = auth.LoginPKCE(cmd.Context(), lc)
			}
			if err != nil {
				return fmt.Errorf("login to %s failed: %w", base, err)
			}
			if err := saveLogin(savedLogin{Proxy: base, Token: tr.Token, ExpiresAt: tr.ExpiresAt, Email: tr.Identity.Email}); err != nil {
				return fmt.Errorf("saving your login: %w", err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"proxy": base, "identity": tr.Identity, "expires_at": tr.ExpiresAt})
			}
			name := tr.Identity.Email
			if tr.Identity.Name != "" {
				name = tr.Identity.Name + " <" + tr.Identity.Email + ">"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as %s (groups: %s) until %s\n", base, name, strings.Join(tr.Identity.Groups, ", "), tr.ExpiresAt.Local().Format("2006-01-02 15:04"))
			// With an active SSH amendment, the certificate comes with the
			// login; without one, the key is made now and jitproxy certs
			// fetches the certificate after the next approval.
			cl := &client{base: base, token: tr.Token, http: &http.Client{Timeout: clientTimeout}}
			if c, err := refreshCert(cmd.Context(), cl); err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "SSH certificate valid until %s\n", c.ValidBefore.Local().Format("2006-01-02 15:04"))
			} else if ae := (*apiError)(nil); !errors.As(err, &ae) || (ae.Code != "forbidden" && ae.Code != "not_found") {
				fmt.Fprintf(cmd.ErrOrStderr(), "no SSH certificate yet: %v\n", err)
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&noBrowser, "no-browser", false, "print the login URL instead of opening a browser")
	c.Flags().BoolVar(&device, "device", false, "log in with a code on another device (device authorization grant)")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up if the login has not finished by then")
	return c
}

// openBrowser starts the desktop's browser on url, when there is a desktop.
func openBrowser(url string) error {
	var name string
	var args []string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		name, args = "rundll32", []string{"url.dll,FileProtocolHandler"}
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return fmt.Errorf("no desktop session")
		}
		name = "xdg-open"
	}
	cmd := exec.Command(name, append(args, url)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap it; its exit status says nothing useful
	return nil
}

func newLogoutCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "logout",
		Short: "Forget your login (the server revokes the session token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.newClient(false)
			if err != nil {
				return err
			}
			if cl.token == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "not logged in")
				return nil
			}
			if err := auth.Logout(cmd.Context(), auth.LoginConfig{ProxyURL: cl.base}, cl.token); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "the server could not revoke the session (%v); forgetting it here anyway\n", err)
			}
			if err := forgetLogin(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s\n", cl.base)
			return nil
		},
	}
	f.register(c)
	return c
}
