package postgres

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/jitproxy/jitproxy/amendment"
	"github.com/jitproxy/jitproxy/certs"
)

// grant is what an authenticated connection may reach: the amendment it
// rides on and the role and database on its target.
type grant struct {
	amend    *amendment.Amendment
	t        *target
	role     Role
	database string
}

// resource names the grant the way people write it: app_ro@app-db/app.
func (g grant) resource() string {
	return amendment.Resource{Kind: amendment.KindPostgres, Target: g.t.Name, Role: g.role.Name, Database: g.database}.String()
}

// authorize checks the DB token, then the live
// amendment behind it, and settles the role and database.
func (s *Server) authorize(ctx context.Context, h *hello, token string) (grant, error) {
	t := s.targets[h.target]
	if token == "" {
		return grant{}, refuse(codeInvalidPassword, "no token", "no database token: get one with jitproxy db-token %s and give it as the password (or run jitproxy psql %s)", t.Name, t.Name)
	}
	tok, err := s.cfg.Tokens.Verify(token, h.person, t.Name)
	if err != nil {
		return grant{}, tokenRefusal(err, t.Name)
	}
	a, err := s.cfg.Access.ActivePostgres(ctx, h.person, t.Name, "", h.database)
	if err != nil {
		if ctx.Err() != nil {
			return grant{}, refuse(codeCannotConnectNow, "access check timed out", "checking your access took too long; try again in a moment")
		}
		return grant{}, refuseWith(codeInvalidAuthSpec, "no amendment", err)
	}
	if a.ID != tok.Amendment {
		// The person holds several amendments on the target (app_ro and
		// app_rw, say) and the token names another than the longest: ask
		// role by role for the one it names.
		for _, role := range slices.Sorted(maps.Keys(t.Roles)) {
			if b, err := s.cfg.Access.ActivePostgres(ctx, h.person, t.Name, role, h.database); err == nil && b.ID == tok.Amendment {
				a = b
				break
			}
		}
	}
	if a.ID != tok.Amendment {
		return grant{}, refuse(codeInvalidPassword, "token for another amendment", "your database token is for amendment %s, which does not grant this connection to %s (amendment %s does): run jitproxy db-token %s", (&amendment.Amendment{ID: tok.Amendment}).ShortID(), t.Name, a.ShortID(), t.Name)
	}
	if a.Resource.Kind != amendment.KindPostgres || a.Resource.Target != t.Name {
		return grant{}, refuse(codeInvalidAuthSpec, "no amendment", "amendment %s does not grant access to PostgreSQL target %s: run jitproxy request %s --role ROLE --for 1h --reason ...", a.ShortID(), t.Name, t.Name)
	}
	role, ok := t.Roles[a.Resource.Role]
	if !ok {
		return grant{}, refuse(codeInvalidAuthSpec, "role not configured", "amendment %s grants role %s, which target %s does not configure: ask the jitproxy admins to add it", a.ShortID(), a.Resource.Role, t.Name)
	}
	db, err := database(t, a, h.database)
	if err != nil {
		return grant{}, err
	}
	return grant{amend: a, t: t, role: role, database: db}, nil
}

// database settles which database a connection reaches: the one it named,
// or the amendment's, or the target's only one; each must be one that both
// the amendment and the target allow.
func database(t *target, a *amendment.Amendment, asked string) (string, error) {
	db := asked
	if db == "" {
		db = a.Resource.Database
	}
	if db == "" && len(t.Databases) == 1 {
		db = t.Databases[0]
	}
	switch {
	case db == "":
		return "", refuse(codeInvalidAuthSpec, "no database", "say which database: set dbname to %s/DATABASE", t.Name)
	case a.Resource.Database != "" && db != a.Resource.Database:
		return "", refuse(codeInvalidAuthSpec, "database not allowed", "amendment %s grants database %s on %s, not %s: connect with dbname=%s/%s", a.ShortID(), a.Resource.Database, t.Name, db, t.Name, a.Resource.Database)
	case len(t.Databases) > 0 && !slices.Contains(t.Databases, db):
		return "", refuse(codeInvalidAuthSpec, "database not allowed", "target %s serves no database %s through jitproxy (it serves %s)", t.Name, db, strings.Join(t.Databases, ", "))
	}
	return db, nil
}

// tokenRefusal says what is wrong with a DB token, and what to do.
func tokenRefusal(err error, target string) *userError {
	var what string
	switch {
	case errors.Is(err, certs.ErrTokenExpired):
		what = certs.ErrTokenExpired.Error()
	case errors.Is(err, certs.ErrTokenWrongPerson):
		what = certs.ErrTokenWrongPerson.Error() + " (the user must be your own jitproxy identity)"
	case errors.Is(err, certs.ErrTokenWrongTarget):
		what = certs.ErrTokenWrongTarget.Error()
	default:
		what = certs.ErrTokenInvalid.Error()
	}
	return refuse(codeInvalidPassword, "bad token", "%s: run jitproxy db-token %s", what, target)
}
