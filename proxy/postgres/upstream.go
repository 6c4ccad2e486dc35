package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// applicationNamePrefix starts the application_name of every upstream
// session, followed by the person: pg_stat_activity shows who is behind
// jitproxy's connections.
const applicationNamePrefix = "jitproxy/"

// connect logs in to the grant's target as its role, with the client's
// harmless startup parameters, read-only if the amendment says so, and
// takes the raw connection over from pgconn once the server is ready.
func (s *Server) connect(ctx context.Context, g grant, h *hello) (*pgconn.HijackedConn, error) {
	pc := g.t.pg.Copy()
	pc.User = g.role.User
	if pc.User == "" {
		pc.User = g.role.Name
	}
	pc.Database = g.database
	pc.Password = ""
	if g.role.Password != nil {
		pw, err := g.role.Password()
		if err != nil {
			return nil, fmt.Errorf("password of role %s on %s: %w", g.role.Name, g.t.Name, err)
		}
		pc.Password = pw
	}
	pc.RuntimeParams = make(map[string]string, len(h.params)+2)
	maps.Copy(pc.RuntimeParams, h.params)
	pc.RuntimeParams["application_name"] = applicationNamePrefix + h.person
	if g.amend.Resource.ReadOnly {
		// A default, which the person may SET otherwise: it keeps honest
		// mistakes out; only a read-only role enforces reading.
		pc.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pc.DialFunc = s.dialTarget

	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := conn.SyncConn(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	hc, err := conn.Hijack()
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return hc, nil
}

// dialTarget dials a target within dialTimeout.
func (s *Server) dialTarget(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	return s.cfg.Dial(ctx, network, addr)
}

// upstreamRefusal tells the person why the target would not take the
// session. What the target said about the request (no such database, too
// many connections) is passed on; a failed login is the proxy's own
// configuration, for the admins, whose log line has the details.
func (ss *pgSession) upstreamRefusal(err error) error {
	ss.log.Error().Err(err).Msg("upstream login failed")
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == sqlstateLen && !strings.HasPrefix(pe.Code, "28") {
		return refuse(pe.Code, "target refused", "%s refused the session: %s", ss.g.t.Name, pe.Message)
	}
	return refuse(codeRejectedConnection, "upstream login failed", "jitproxy could not log in to %s as %s: try again, or give the jitproxy admins session %s", ss.g.t.Name, ss.g.role.Name, ss.id)
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
