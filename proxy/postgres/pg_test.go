package postgres_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pgBin is where Debian's PostgreSQL 15 server binaries live.
const pgBin = "/usr/lib/postgresql/15/bin"

// Passwords of the test roles; the proxy injects them, people never see them.
const (
	roPassword = "ro-secret-Zq8"
	rwPassword = "rw-secret-Zq8"
)

// pgServer is a real PostgreSQL 15 for the package's tests, started once on
// a free loopback port in a temporary directory and stopped by TestMain.
type pgServer struct {
	dir  string // owned by the server's user: data directory, socket, certificates
	port int
	addr string // 127.0.0.1:port
	// caFile is the CA that signed the server's certificate (for
	// 127.0.0.1) and the client certificate of role app_cert.
	caFile            string
	certFile, keyFile string // the client certificate of role app_cert
	cmd               *exec.Cmd
	cred              *syscall.Credential // nil: run as ourselves
	exited            chan struct{}
}

var (
	pgOnce    sync.Once
	pgShared  *pgServer
	pgSkipWhy string
	pgErr     error
)

// postgresServer returns the shared server, starting it on first use; it
// skips the test if the server binaries (or, as root, the postgres user)
// are missing.
func postgresServer(t testing.TB) *pgServer {
	t.Helper()
	pgOnce.Do(func() { pgShared, pgSkipWhy, pgErr = startPostgres() })
	if pgSkipWhy != "" {
		t.Skip(pgSkipWhy)
	}
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pgShared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgShared != nil {
		pgShared.stop()
	}
	os.Exit(code)
}

func startPostgres() (*pgServer, string, error) {
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		return nil, "PostgreSQL 15 server binaries not installed (" + pgBin + "): apt-get install postgresql-15 (the project's test script does)", nil
	}
	if _, err := exec.LookPath("psql"); err != nil {
		return nil, "psql not installed: apt-get install postgresql-client-15", nil
	}
	s := &pgServer{exited: make(chan struct{})}
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "running as root and there is no postgres user to run PostgreSQL as: apt-get install postgresql-15 creates it", nil
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "jitproxy-pg-")
	if err != nil {
		return nil, "", err
	}
	s.dir = dir
	fail := func(err error) (*pgServer, string, error) {
		os.RemoveAll(dir)
		return nil, "", err
	}
	if err := s.writeCerts(); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		}); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.command(filepath.Join(pgBin, "initdb"), "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	hba := "local all all trust\n" +
		"hostssl all app_cert 127.0.0.1/32 cert\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fail(err)
	}
	if uid >= 0 {
		os.Chown(filepath.Join(data, "pg_hba.conf"), uid, gid)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	s.port, s.addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var logBuf bytes.Buffer
	s.cmd = s.command(filepath.Join(pgBin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(dir, "server.crt"), "-c", "ssl_key_file="+filepath.Join(dir, "server.key"),
		"-c", "ssl_ca_file="+s.caFile, "-c", "max_connections=60", "-c", "shared_buffers=32MB")
	s.cmd.Stdout, s.cmd.Stderr = &logBuf, &logBuf
	if err := s.cmd.Start(); err != nil {
		return fail(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.superuser("select 1"); err == nil {
			break
		}
		select {
		case <-s.exited:
			return fail(fmt.Errorf("postgres exited:\n%s", logBuf.String()))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, "", fmt.Errorf("postgres did not start in 30s:\n%s", logBuf.String())
		}
	}
	setup := `
CREATE ROLE app_ro LOGIN PASSWORD '` + roPassword + `';
CREATE ROLE app_rw LOGIN PASSWORD '` + rwPassword + `';
CREATE ROLE app_cert LOGIN;
CREATE DATABASE app;
\c app
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric);
INSERT INTO items (name, price) SELECT 'item ' || i, i * 1.5 FROM generate_series(1, 100) i;
CREATE TABLE blobs (id int, payload text);
GRANT SELECT ON items TO app_ro, app_cert;
GRANT SELECT, INSERT, UPDATE, DELETE ON items, blobs TO app_rw;
GRANT USAGE ON SEQUENCE items_id_seq TO app_rw;
`
	if err := s.superuser(setup); err != nil {
		s.stop()
		return nil, "", fmt.Errorf("setup: %w", err)
	}
	return s, "", nil
}

// command runs a server binary as the server's user.
func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// superuser runs SQL (psql script) as the postgres superuser over the
// Unix socket.
func (s *pgServer) superuser(sql string) error {
	cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.dir, "-p", strconv.Itoa(s.port), "-U", "postgres", "-d", "postgres")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.Stdin = bytes.NewBufferString(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// query returns the output of one query run as the superuser in database
// app, unaligned and without headers.
func (s *pgServer) query(t testing.TB, sql string) string {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-At", "-h", s.dir, "-p", strconv.Itoa(s.port), "-U", "postgres", "-d", "app", "-c", sql)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("superuser query %q: %v: %s", sql, err, out)
	}
	return string(bytes.TrimSpace(out))
}

func (s *pgServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown: nothing to keep
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}

// writeCerts writes a CA, the server's certificate for 127.0.0.1 and the
// client certificate of role app_cert into the server's directory.
func (s *pgServer) writeCerts() error {
	ca, caKey, err := newCA("jitproxy test PostgreSQL CA")
	if err != nil {
		return err
	}
	s.caFile = filepath.Join(s.dir, "ca.crt")
	if err := writePEM(s.caFile, "CERTIFICATE", ca.Raw, 0o644); err != nil {
		return err
	}
	for _, c := range []struct {
		name     string
		cn       string
		server   bool
		crt, key string
	}{
		{"server", "127.0.0.1", true, "server.crt", "server.key"},
		{"client", "app_cert", false, "client.crt", "client.key"},
	} {
		der, key, err := issueCert(ca, caKey, c.cn, c.server)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(s.dir, c.crt), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(s.dir, c.key), "EC PRIVATE KEY", kb, 0o600); err != nil {
			return err
		}
	}
	s.certFile, s.keyFile = filepath.Join(s.dir, "client.crt"), filepath.Join(s.dir, "client.key")
	return nil
}

func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func issueCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return der, key, err
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// selfSignedTLS returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1: the proxy's own, which psql with
// sslmode=require does not verify.
func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	ca, caKey, err := newCA("jitproxy test proxy")
	if err != nil {
		t.Fatal(err)
	}
	der, key, err := issueCert(ca, caKey, "127.0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}}}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
