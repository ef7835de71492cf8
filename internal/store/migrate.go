package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationsFS holds the SQL migrations; one set serves both databases.
//
//go:embed migrations/*.sql
var migrationsFS embed.FS

// migrate applies pending migrations. Several processes may open the same
// database at once (server and CLI), so PostgreSQL migrates under an
// advisory lock; for SQLite the immediate transaction goose runs each
// migration in is the lock, and a process that lost the race retries and
// finds the migration applied.
func migrate(ctx context.Context, d *DB) error {
	fsys, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(d.log),
	}
	dialect := goose.DialectSQLite3
	if d.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(d.lockKey("migrate")),
			lock.WithLockTimeout(1, 300),
		)
		if err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	const attempts = 3
	for i := 1; ; i++ {
		p, err := goose.NewProvider(dialect, d.db.DB, fsys, opts...)
		if err != nil {
			return fmt.Errorf("store: migrations: %w", err)
		}
		_, err = p.Up(ctx)
		if err == nil {
			return nil
		}
		if d.dialect != DialectSQLite || i == attempts || ctx.Err() != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		d.log.Info("store: migration failed, retrying", "attempt", i, "err", err)
	}
}
