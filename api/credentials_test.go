package api_test

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/api"
	"github.com/jitproxy/jitproxy/certs"
)

// credEnv is the API with the real certificate authority and token issuer.
func credEnv(t *testing.T) (*env, *certs.Authority, *certs.TokenIssuer) {
	t.Helper()
	dir := t.TempDir()
	var ca *certs.Authority
	var tokens *certs.TokenIssuer
	e := newEnv(t, func(c *api.Config) {
		var err error
		ca, err = certs.New(certs.Config{UserCAKeyFile: filepath.Join(dir, "user_ca"), HostCAKeyFile: filepath.Join(dir, "host_ca"), Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		tokens, err = certs.NewTokenIssuer(certs.TokenConfig{KeyFile: filepath.Join(dir, "db_token_key"), Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		c.SSH = &api.SSHCredentials{Authority: ca, Bastion: "127.0.0.1:2222"}
		c.DB = &api.DBCredentials{Tokens: tokens, Endpoint: "127.0.0.1:5433", TTL: 30 * time.Minute}
		c.AuditLog = c.Audit.(api.AuditLog) // the store: where the trail is read from is where the API appends
	})
	return e, ca, tokens
}

func (e *env) auditTypes(t *testing.T) []string {
	t.Helper()
	var out []string
	for ev, err := range e.store.AuditEvents(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Type+" "+string(ev.Data))
	}
	return out
}

func TestSSHCertificate(t *testing.T) {
	e, ca, _ := credEnv(t)
	key, err := certs.LoadOrCreateKey(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	pub := string(ssh.MarshalAuthorizedKey(key.PublicKey()))

	r := e.do(t, "alice", "POST", "/api/v1/ssh/certificate", api.CertificateBody{PublicKey: pub})
	if got := decode[api.ErrorBody](t, r); r.status != http.StatusForbidden || !strings.HasPrefix(got.Error.Message, "no active SSH amendment, so no certificate: request one with jitproxy request") {
		t.Fatalf("without an amendment: %d %q; want 403 saying to request one", r.status, got.Error.Message)
	}

	a := decodeAmendment(t, e.do(t, "alice", "POST", "/api/v1/amendments", api.RequestBody{Target: "web-1", Login: "ubuntu", Duration: "2h", Reason: "deploy"}).body)
	e.do(t, "bob", "POST", "/api/v1/amendments/"+a.ID+"/approve", api.ApproveBody{})
	active, err := e.store.Get(context.Background(), a.ID)
	if err != nil || active.State != amendment.Active {
		t.Fatalf("amendment %v, %v; want active", active, err)
	}

	r = e.do(t, "alice", "POST", "/api/v1/ssh/certificate", api.CertificateBody{PublicKey: pub})
	if r.status != http.StatusOK {
		t.Fatalf("with an active amendment: %d %s", r.status, r.body)
	}
	got := decode[api.Certificate](t, r)
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	cert := k.(*ssh.Certificate)
	if cert.KeyId != "alice@example.com" || !slices.Equal(cert.ValidPrincipals, []string{"alice@example.com", "alice"}) {
		t.Errorf("cert names %q %v; want alice@example.com [alice@example.com alice]", cert.KeyId, cert.ValidPrincipals)
	}
	if int64(cert.ValidBefore) != active.ExpiresAt.Unix() {
		t.Errorf("cert valid before %d; want the amendment's expiry %d", cert.ValidBefore, active.ExpiresAt.Unix())
	}
	if !slices.ContainsFunc(ca.UserCAKeys(), func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(cert.SignatureKey.Marshal()) }) {
		t.Error("certificate not signed by the user CA")
	}
	if len(got.KnownHosts) == 0 || !strings.HasPrefix(got.KnownHosts[0], "@cert-authority * ") || got.Bastion != "127.0.0.1:2222" {
		t.Errorf("known_hosts %q, bastion %q", got.KnownHosts, got.Bastion)
	}
	if types := e.auditTypes(t); !strings.HasPrefix(types[len(types)-1], "cert.minted ") {
		t.Errorf("last audit row %q; want cert.minted", types[len(types)-1])
	}

	for _, tt := range []struct{ name, key, want string }{
		{"garbage", "not a key", "public_key is not an SSH public key in authorized_keys format"},
		{"a certificate", got.Certificate, "public_key is a certificate; send the plain public key"},
	} {
		r := e.do(t, "alice", "POST", "/api/v1/ssh/certificate", api.CertificateBody{PublicKey: tt.key})
		if msg := decode[api.ErrorBody](t, r).Error.Message; r.status != http.StatusBadRequest || !strings.HasPrefix(msg, tt.want) {
			t.Errorf("%s: %d %q; want 400 %q", tt.name, r.status, msg, tt.want)
		}
	}
}

func TestDBToken(t *testing.T) {
	e, _, tokens := credEnv(t)
	r := e.do(t, "alice", "POST", "/api/v1/db/token", api.DBTokenBody{Target: "app-db"})
	if msg := decode[api.ErrorBody](t, r).Error.Message; r.status != http.StatusNotFound || !strings.Contains(msg, "run jitproxy request app-db --role ROLE") {
		t.Fatalf("without an amendment: %d %q", r.status, msg)
	}
	a := decodeAmendment(t, e.do(t, "alice", "POST", "/api/v1/amendments", api.RequestBody{Target: "app-db", Role: "app_ro", Duration: "2h"}).body)
	if a.State != amendment.Active {
		t.Fatalf("auto-approved amendment is %s", a.State)
	}
	r = e.do(t, "alice", "POST", "/api/v1/db/token", api.DBTokenBody{Target: "app-db"})
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	got := decode[api.DBToken](t, r)
	if got.User != "alice@example.com" || got.DBName != "app-db/app" || got.Host != "127.0.0.1" || got.Port != 5433 || got.SSLMode != "require" || got.Amendment != a.ID {
		t.Errorf("connection details %+v", got)
	}
	if want := e.clock.Now().Add(30 * time.Minute); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires %v; want the 30m TTL %v (the amendment lasts longer)", got.ExpiresAt, want)
	}
	tok, err := tokens.Verify(got.Token, "alice@example.com", "app-db")
	if err != nil || tok.Amendment != a.ID {
		t.Errorf("token verifies as %+v, %v; want alice's on amendment %s", tok, err, a.ID)
	}
	if _, err := tokens.Verify(got.Token, "bob@example.com", "app-db"); err == nil {
		t.Error("alice's token verified for bob")
	}
	for _, row := range e.auditTypes(t) {
		if strings.Contains(row, got.Token) {
			t.Fatalf("the token is in the audit trail: %s", row)
		}
	}
	if types := e.auditTypes(t); !strings.HasPrefix(types[len(types)-1], "dbtoken.issued ") {
		t.Errorf("last audit row %q; want dbtoken.issued", types[len(types)-1])
	}
}

func TestTargets(t *testing.T) {
	e, _, _ := credEnv(t)
	got := decode[api.Targets](t, e.do(t, "alice", "GET", "/api/v1/targets", nil))
	var names []string
	for _, v := range got.Targets {
		names = append(names, v.Name+":"+strings.Join(v.Rules, ","))
	}
	if want := []string{"app-db:eng-db", "prod-1:eng-prod", "web-1:eng-web"}; !slices.Equal(names, want) || got.Bastion != "127.0.0.1:2222" || got.Postgres != "127.0.0.1:5433" {
		t.Errorf("alice's targets %v (%s, %s); want %v and both endpoints", names, got.Bastion, got.Postgres, want)
	}
	if got := decode[api.Targets](t, e.do(t, "erin", "GET", "/api/v1/targets", nil)); len(got.Targets) != 0 {
		t.Errorf("erin, in no rule, sees %v; want nothing", got.Targets)
	}
}
