package store

import (
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func TestSQLitePragmas(t *testing.T) {
	s, err := OpenSQLite(t.Context(), SQLiteConfig{Path: filepath.Join(t.TempDir(), "j.db"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tests := []struct {
		pool   string
		pragma string
		want   string
	}{
		{"write", "journal_mode", "wal"},
		{"write", "synchronous", "2"}, // FULL
		{"write", "foreign_keys", "1"},
		{"write", "busy_timeout", "5000"},
		{"write", "query_only", "0"},
		{"read", "journal_mode", "wal"},
		{"read", "foreign_keys", "1"},
		{"read", "busy_timeout", "5000"},
		{"read", "query_only", "1"},
	}
	for _, tt := range tests {
		db := s.w
		if tt.pool == "read" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("%s pool: PRAGMA %s: %v", tt.pool, tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("%s pool: PRAGMA %s = %s; want %s", tt.pool, tt.pragma, got, tt.want)
		}
	}
	if got := s.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("write pool max open connections = %d; want 1", got)
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(sqliteMigrationFS, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "0001_init.sql" {
		t.Fatalf("migrations = %+v; want 0001_init.sql first", ms)
	}
	for i := range ms {
		if ms[i].version != i+1 {
			t.Errorf("migration %s has version %d; want %d (no gaps)", ms[i].name, ms[i].version, i+1)
		}
	}
}
