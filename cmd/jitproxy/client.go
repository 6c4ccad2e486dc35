package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const (
	defaultProxy  = "http://127.0.0.1:8080"
	tokenFileName = "token.json"
	clientTimeout = 30 * time.Second
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	proxy string
	json  bool
}

func (f *clientFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.proxy, "proxy", "", "jitproxy server URL (default $JITPROXY_PROXY, else the one you logged in to, else "+defaultProxy+")")
	c.Flags().BoolVar(&f.json, "json", false, "print JSON for scripts instead of a table")
}

// home is $JITPROXY_HOME, default ~/.jitproxy.
func home() (string, error) {
	if h := os.Getenv("JITPROXY_HOME"); h != "" {
		return h, nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find your home directory (set JITPROXY_HOME): %w", err)
	}
	return filepath.Join(u, ".jitproxy"), nil
}

// savedLogin is what jitproxy login keeps in $JITPROXY_HOME/token.json (0600).
type savedLogin struct {
	Proxy     string    `json:"proxy"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Email     string    `json:"email"`
}

func loadLogin() (*savedLogin, error) {
	h, err := home()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(h, tokenFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l savedLogin
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): run jitproxy login", filepath.Join(h, tokenFileName), err)
	}
	return &l, nil
}

// saveLogin writes the token file with mode 0600 in a 0700 directory,
// atomically, so a crash never leaves half a token behind.
func saveLogin(l savedLogin) error {
	h, err := home()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(h, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(h, ".token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(h, tokenFileName))
}

func forgetLogin() error {
	h, err := home()
	if err != nil {
		return err
	}
	err = os.Remove(filepath.Join(h, tokenFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// client talks to the jitproxy API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// proxyURL resolves which server to talk to: flag, environment, saved login,
// default.
func (f *clientFlags) proxyURL(saved *savedLogin) string {
	switch {
	case f.proxy != "":
		return strings.TrimRight(f.proxy, "/")
	case os.Getenv("JITPROXY_PROXY") != "":
		return strings.TrimRight(os.Getenv("JITPROXY_PROXY"), "/")
	case saved != nil && saved.Proxy != "":
		return saved.Proxy
	}
	return defaultProxy
}

// newClient returns a client for the server; with needLogin it fails with
// "not logged in" when there is no saved token for that server.
func (f *clientFlags) newClient(needLogin bool) (*client, error) {
	saved, err := loadLogin()
	if err != nil {
		return nil, err
	}
	c := &client{base: f.proxyURL(saved), http: &http.Client{Timeout: clientTimeout}}
	if saved != nil && saved.Proxy == c.base {
		c.token = saved.Token
	}
	if needLogin && c.token == "" {
		return nil, &exitError{code: 1, msg: "not logged in: run jitproxy login --proxy " + c.base}
	}
	return c, nil
}

// apiError is the API's JSON error body.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Code == "unauthenticated" {
		return e.Message
	}
	return e.Message + " (" + e.Code + ")"
}

// do sends a JSON request and decodes a JSON answer into out (if non-nil).
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach jitproxy at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error apiError `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
			return fmt.Errorf("jitproxy at %s answered %s", c.base, resp.Status)
		}
		e.Error.Status = resp.StatusCode
		if resp.StatusCode == http.StatusUnauthorized {
			return &exitError{code: 1, msg: e.Error.Message}
		}
		return &e.Error
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("jitproxy at %s sent an answer this client cannot read (%v): is the client older than the server?", c.base, err)
	}
	return nil
}
