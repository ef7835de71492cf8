package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// GetSetting returns an instance setting or ca.ErrNotFound.
func (d *DB) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	if err := d.db.GetContext(ctx, &v, d.Rebind(`SELECT value FROM instance WHERE key = ?`), key); err != nil {
		return "", notFound(err, "setting "+key)
	}
	return v, nil
}

// SetSetting creates or replaces an instance setting through group commit.
func (d *DB) SetSetting(ctx context.Context, key, value string) error {
	if key == "" {
		return fmt.Errorf("%w: empty setting key", ErrInvalid)
	}
	return d.Write(ctx, func(ctx context.Context, tx *sqlx.Tx) error {
		return d.setSetting(ctx, tx, key, value)
	})
}

// SetSettingTx is SetSetting inside a transaction of InTx or Write.
func (d *DB) SetSettingTx(ctx context.Context, tx *sqlx.Tx, key, value string) error {
	if key == "" {
		return fmt.Errorf("%w: empty setting key", ErrInvalid)
	}
	return d.setSetting(ctx, tx, key, value)
}

func (d *DB) setSetting(ctx context.Context, tx *sqlx.Tx, key, value string) error {
	// ON CONFLICT ... DO UPDATE is spelled the same in SQLite and PostgreSQL.
	if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO instance (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`), key, value); err != nil {
		return fmt.Errorf("store: set %s: %w", key, err)
	}
	return nil
}
