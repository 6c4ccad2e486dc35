-- 0001_init: amendments, the audit trail and login sessions.
-- Times are text in UTC with exactly six fractional digits
-- (2006-01-02T15:04:05.000000Z), so they round-trip exactly and sort as text.

-- amendments keeps the current version of each amendment. data is the whole
-- amendment as JSON and is what Get and List return; the other columns
-- duplicate fields of data for filtering, ordering and the compare-and-set.
CREATE TABLE amendments (
	id         TEXT    NOT NULL PRIMARY KEY,
	version    INTEGER NOT NULL CHECK (version >= 1),
	state      TEXT    NOT NULL,
	requester  TEXT    NOT NULL,
	target     TEXT    NOT NULL,
	created_at TEXT    NOT NULL,
	updated_at TEXT    NOT NULL,
	data       TEXT    NOT NULL CHECK (json_valid(data))
) STRICT;

CREATE INDEX amendments_created   ON amendments (created_at DESC, id);
CREATE INDEX amendments_state     ON amendments (state, created_at DESC);
CREATE INDEX amendments_requester ON amendments (requester, created_at DESC);
CREATE INDEX amendments_target    ON amendments (target, created_at DESC);

-- audit is the hash chain: hash = SHA-256(prev_hash || canonical event), see
-- package audit. data is the canonical JSON the hash covers.
CREATE TABLE audit (
	seq       INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
	time      TEXT    NOT NULL,
	type      TEXT    NOT NULL,
	actor     TEXT    NOT NULL,
	amendment TEXT    NOT NULL DEFAULT '',
	session   TEXT    NOT NULL DEFAULT '',
	data      TEXT    NOT NULL,
	prev_hash TEXT    NOT NULL,
	hash      TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_amendment ON audit (amendment, seq) WHERE amendment <> '';
CREATE INDEX audit_session   ON audit (session, seq)   WHERE session <> '';

-- The trail is append-only. These triggers stop a bug or a careless
-- operator from changing a row; they do not stop someone who can write the
-- file (they can drop the triggers): the hash chain is what catches that.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit rows are append-only');
END;

-- sessions are proxy login sessions (what `jitproxy login` stores a token
-- for). Only a hash of the token is kept; identity is amendment.Identity as
-- JSON.
CREATE TABLE sessions (
	token_hash TEXT NOT NULL PRIMARY KEY,
	identity   TEXT NOT NULL CHECK (json_valid(identity)),
	issued_at  TEXT NOT NULL,
	expires_at TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_expires ON sessions (expires_at);
