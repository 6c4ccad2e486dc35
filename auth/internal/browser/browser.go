// Package browser is a programmatic browser for tests: an http.Client with a
// cookie jar that follows redirects, reads the plain HTML forms of the dev
// identity provider and submits them as a person would. It runs no scripts
// and is not for production use.
package browser

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Browser is one user agent with its own cookies.
type Browser struct {
	client  *http.Client
	formRe  *regexp.Regexp
	inputRe *regexp.Regexp
	attrRe  *regexp.Regexp
}

// Page is a fetched page: the URL it was finally served from, its status,
// headers and body.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   string
}

// New returns a browser. When stopAt is non-nil, redirects to a URL it
// accepts are not followed: the 3xx answer is the returned page.
func New(stopAt func(*url.URL) bool) *Browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &Browser{
		client: &http.Client{
			Jar:     jar,
			Timeout: 30 * time.Second,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if stopAt != nil && stopAt(req.URL) {
					return http.ErrUseLastResponse
				}
				if len(via) > 20 {
					return fmt.Errorf("browser: more than 20 redirects")
				}
				return nil
			},
		},
		formRe:  regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`),
		inputRe: regexp.MustCompile(`(?is)<input\b([^>]*)>`),
		attrRe:  regexp.MustCompile(`(?is)([a-z_:-]+)\s*=\s*"([^"]*)"`),
	}
}

// Get fetches rawURL, following redirects.
func (b *Browser) Get(ctx context.Context, rawURL string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// Submit fills the first form on page with fields (over the form's own
// input values, hidden ones included) and posts it to the form's action, as
// a press of its first submit button would, following redirects.
func (b *Browser) Submit(ctx context.Context, page *Page, fields map[string]string) (*Page, error) {
	m := b.formRe.FindStringSubmatch(page.Body)
	if m == nil {
		return nil, fmt.Errorf("browser: no form on %s (status %d)", page.URL, page.Status)
	}
	formAttrs := b.attrs(m[1])
	if method := strings.ToLower(formAttrs["method"]); method != "post" {
		return nil, fmt.Errorf("browser: form on %s has method %q, want post", page.URL, method)
	}
	action, err := page.URL.Parse(formAttrs["action"])
	if err != nil {
		return nil, fmt.Errorf("browser: form action: %w", err)
	}
	values := url.Values{}
	for _, in := range b.inputRe.FindAllStringSubmatch(m[2], -1) {
		a := b.attrs(in[1])
		if a["name"] != "" {
			values.Set(a["name"], a["value"])
		}
	}
	for name, v := range fields {
		values.Set(name, v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// Inputs returns the names of the input fields of the first form on page.
func (b *Browser) Inputs(page *Page) []string {
	m := b.formRe.FindStringSubmatch(page.Body)
	if m == nil {
		return nil
	}
	var names []string
	for _, in := range b.inputRe.FindAllStringSubmatch(m[2], -1) {
		if n := b.attrs(in[1])["name"]; n != "" {
			names = append(names, n)
		}
	}
	return names
}

func (b *Browser) attrs(s string) map[string]string {
	out := make(map[string]string)
	for _, kv := range b.attrRe.FindAllStringSubmatch(s, -1) {
		out[strings.ToLower(kv[1])] = html.UnescapeString(kv[2])
	}
	return out
}

func (b *Browser) do(req *http.Request) (*Page, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return &Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}
