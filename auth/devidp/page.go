package devidp

import (
	"html/template"
	"net/http"
)

// Paths of the provider's own pages, relative to the issuer's path.
const (
	loginPath  = "/login"
	devicePath = "/device"
)

// pagesHTML holds the provider's plain HTML pages: no scripts, forms that
// post ordinary fields, so a person, a headless browser or an http.Client
// can sign in.
const pagesHTML = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · jitproxy dev identity provider</title>
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}
label,input,button{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}
input{padding:.5rem;font-size:1rem}button{padding:.5rem;font-size:1rem;margin-top:.8rem}
.error{color:#a00;border:1px solid #a00;padding:.5rem}.note{color:#666;font-size:.9rem}
</style></head><body>{{end}}

{{define "login"}}{{template "head" "Sign in"}}
<h1>Sign in</h1>
<p class="note">jitproxy dev identity provider: for development only.</p>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{{.Username}}" required{{if not .Username}} autofocus{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{{if .Username}} autofocus{{end}}>
<button type="submit" id="signin" name="action" value="signin">Sign in</button>
<button type="submit" id="cancel" name="action" value="cancel" formnovalidate>Cancel</button>
</form></body></html>{{end}}

{{define "device"}}{{template "head" "Device sign-in"}}
<h1>Sign in a device</h1>
<p class="note">Enter the code shown in your terminal, then sign in.</p>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="user_code">Code</label>
<input id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" required{{if not .UserCode}} autofocus{{end}}>
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{{.Username}}" required{{if .UserCode}} autofocus{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="approve" name="action" value="approve">Sign in and allow</button>
<button type="submit" id="deny" name="action" value="deny">Deny</button>
</form></body></html>{{end}}

{{define "message"}}{{template "head" .Title}}
<h1>{{.Title}}</h1>
<p id="message">{{.Message}}</p>
</body></html>{{end}}
`

func parsePages() *template.Template {
	return template.Must(template.New("pages").Parse(pagesHTML))
}

type loginPage struct {
	Action, ID, Username, Error string
}

type devicePage struct {
	Action, UserCode, Username, Error string
}

type messagePage struct {
	Title, Message string
}

// render writes one page with status; pages never carry secrets, and a
// template error after the header is only logged.
func (p *Provider) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if err := p.pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Error().Err(err).Str("page", name).Msg("render page")
	}
}
