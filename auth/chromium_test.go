package auth

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// TestLoginPKCEWithHeadlessChromium is the browser login as a person does
// it: a real Chromium opens the URL, the person types into the dev IdP's
// form and presses Sign in, and the browser ends on the CLI's loopback page.
func TestLoginPKCEWithHeadlessChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping the real-browser login: %s is not installed (apt-get install chromium)", chromiumPath)
	}
	env := newEnv(t)
	ctx := testContext(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}

	var finalURL, finalText string
	browsed := make(chan error, 1)
	cfg := env.loginConfig(nil)
	cfg.OpenBrowser = func(loginURL string) error {
		go func() {
			err := chromedp.Do(browserCtx,
				chromedp.Navigate(loginURL),
				chromedp.WaitVisible(chromedp.CSS(`#username`)),
				chromedp.SendKeys(chromedp.CSS(`#username`), "alice"),
				chromedp.SendKeys(chromedp.CSS(`#password`), "alice-pw"),
				chromedp.Click(chromedp.CSS(`#signin`)),
				chromedp.WaitVisible(chromedp.CSS(`#message`)),
			)
			if err == nil {
				finalURL, err = chromedp.Run(browserCtx, chromedp.Location())
			}
			if err == nil {
				finalText, err = chromedp.Run(browserCtx, chromedp.Text(chromedp.CSS(`#message`)))
			}
			browsed <- err
		}()
		return nil
	}
	tr, err := LoginPKCE(ctx, cfg)
	if err != nil {
		t.Fatalf("LoginPKCE: %v", err)
	}
	select {
	case err := <-browsed:
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not reach the CLI's page")
	}
	if !strings.HasPrefix(finalURL, "http://127.0.0.1:") || !strings.Contains(finalText, "You can close this tab") {
		t.Errorf("chromium ended on %s saying %q; want the CLI's loopback page saying the tab can be closed", finalURL, finalText)
	}
	id, err := env.authenticate(t, tr.Token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if id.Email != "alice@example.com" || strings.Join(id.Groups, ",") != "dev,sre" {
		t.Errorf("identity: got %+v; want alice@example.com in dev,sre", id)
	}
}
