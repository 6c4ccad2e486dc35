package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/jitproxy/jitproxy/config"
)

// devPostgres is the private PostgreSQL server `jitproxy dev` starts as its
// demo database target, on a free loopback port, in the data directory.
type devPostgres struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// devPostgresDir is where the demo PostgreSQL keeps its cluster: in the
// data directory, except as root, where the server runs as the postgres
// user, who cannot reach into a data directory under /root or a 0700 temp
// dir; then under /var/lib/jitproxy, one cluster per data directory, so a
// restart on the same data directory finds its database again.
func devPostgresDir(dataDir string) string {
	if os.Geteuid() != 0 {
		return filepath.Join(dataDir, "demo-postgres")
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/var/lib/jitproxy", "demo-postgres-"+hex.EncodeToString(sum[:6]))
}

// postgresBinDir finds the newest installed PostgreSQL server's binaries.
func postgresBinDir() (string, bool) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, true
		}
	}
	return "", false
}

// startDevPostgres initializes (once) and starts a private PostgreSQL in dir,
// then makes the target's roles and databases. It returns nil when the
// server binaries are not installed. PostgreSQL refuses to run as root, so
// as root it runs as the postgres system user.
func startDevPostgres(ctx context.Context, dir string, t *config.PostgresTarget, log zerolog.Logger) (*devPostgres, error) {
	bin, ok := postgresBinDir()
	if !ok {
		log.Warn().Msg("demo PostgreSQL target not started: PostgreSQL's server is not installed (apt-get install postgresql)")
		return nil, nil
	}
	attr, uid, gid, err := postgresProcAttr()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	pwFile := filepath.Join(dir, "superuser-password")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		pw := make([]byte, 16)
		rand.Read(pw)
		if err := os.WriteFile(pwFile, []byte(hex.EncodeToString(pw)), 0o600); err != nil {
			return nil, err
		}
		if err := os.Chown(pwFile, uid, gid); err != nil {
			return nil, err
		}
		initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "jitproxy_admin", "--auth=scram-sha-256", "--pwfile="+pwFile, "--no-sync")
		initdb.SysProcAttr = attr
		if out, err := initdb.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb for the demo PostgreSQL: %v: %s", err, out)
		}
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1")
	cmd.SysProcAttr = attr
	logw := log.With().Str("component", "demo-postgres").Logger()
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the demo PostgreSQL: %w", err)
	}
	d := &devPostgres{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	connStr := fmt.Sprintf("postgres://jitproxy_admin:%s@%s/postgres?sslmode=disable&connect_timeout=2", strings.TrimSpace(string(pw)), d.Addr)
	var conn *pgconn.PgConn
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err = pgconn.Connect(ctx, connStr)
		if err == nil {
			break
		}
		select {
		case <-d.done:
			return nil, errors.New("the demo PostgreSQL exited at start: see its log lines above")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("the demo PostgreSQL does not accept connections on %s: %w", d.Addr, err)
		}
	}
	defer conn.Close(ctx)
	if err := bootstrapDemoDB(ctx, conn, connStr, t); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// bootstrapDemoDB creates the target's roles (with their configured
// passwords), databases and a small demo table; it is idempotent.
func bootstrapDemoDB(ctx context.Context, conn *pgconn.PgConn, connStr string, t *config.PostgresTarget) error {
	exec := func(c *pgconn.PgConn, sql string) error {
		_, err := c.Exec(ctx, sql).ReadAll()
		return err
	}
	for _, r := range t.Roles {
		pw, err := r.Password.Value()
		if err != nil {
			return fmt.Errorf("demo role %s: %w", r.Name, err)
		}
		user := cmp.Or(r.User, r.Name)
		q := fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %[1]s) THEN CREATE ROLE %[2]s LOGIN; END IF;
END $$; ALTER ROLE %[2]s PASSWORD %[3]s`, quoteLiteral(user), quoteIdent(user), quoteLiteral(pw))
		if err := exec(conn, q); err != nil {
			return fmt.Errorf("demo role %s: %w", user, err)
		}
	}
	for _, db := range t.Databases {
		rr := conn.Exec(ctx, "SELECT 1 FROM pg_database WHERE datname = "+quoteLiteral(db))
		res, err := rr.ReadAll()
		if err != nil {
			return err
		}
		if len(res) == 0 || len(res[0].Rows) == 0 {
			if err := exec(conn, "CREATE DATABASE "+quoteIdent(db)); err != nil {
				return fmt.Errorf("demo database %s: %w", db, err)
			}
		}
		dbConn, err := pgconn.Connect(ctx, strings.Replace(connStr, "/postgres?", "/"+db+"?", 1))
		if err != nil {
			return err
		}
		grants := []string{`CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer text NOT NULL, total numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
			`INSERT INTO orders (customer, total) SELECT 'customer ' || i, i * 9.99 FROM generate_series(1, 20) i WHERE NOT EXISTS (SELECT FROM orders)`}
		for _, r := range t.Roles {
			user := quoteIdent(cmp.Or(r.User, r.Name))
			grants = append(grants, "GRANT CONNECT ON DATABASE "+quoteIdent(db)+" TO "+user, "GRANT USAGE ON SCHEMA public TO "+user, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+user)
			if strings.HasSuffix(r.Name, "_rw") {
				grants = append(grants, "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+user, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "+user, "GRANT CREATE ON SCHEMA public TO "+user)
			}
		}
		for _, g := range grants {
			if err := exec(dbConn, g); err != nil {
				dbConn.Close(ctx)
				return fmt.Errorf("demo database %s: %s: %w", db, g, err)
			}
		}
		dbConn.Close(ctx)
	}
	return nil
}

func quoteIdent(s string) string   { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// Stop ends the demo PostgreSQL (fast shutdown) and waits for it.
func (d *devPostgres) Stop() {
	if d == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// devTLSCert makes (once) a self-signed certificate for the PostgreSQL
// endpoint in dir, so sslmode=require works out of the box in dev mode.
func devTLSCert(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "postgres-tls.crt"), filepath.Join(dir, "postgres-tls.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "jitproxy dev PostgreSQL endpoint"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
