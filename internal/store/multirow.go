package store

import (
	"context"
	"strings"

	"github.com/jmoiron/sqlx"
)

// multiRowParams caps the parameters of one multi-row INSERT, far below
// either database's limit (SQLite 32766, PostgreSQL 65535).
const multiRowParams = 2048

// execMultiRow inserts n rows of ncols values into table (columns, comma
// separated) with multi-row INSERTs: one statement, so one round trip to
// PostgreSQL, per chunk of rows instead of one per row. row appends the
// values of row i to dst and returns it.
func (d *DB) execMultiRow(ctx context.Context, tx *sqlx.Tx, table, columns string, ncols, n int, row func(i int, dst []any) []any) error {
	perStmt := max(1, multiRowParams/ncols)
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncols), ", ") + ")"
	for start := 0; start < n; start += perStmt {
		end := min(n, start+perStmt)
		var q strings.Builder
		q.Grow(len(table) + len(columns) + 32 + (end-start)*(len(tuple)+2))
		q.WriteString("INSERT INTO " + table + " (" + columns + ") VALUES ")
		args := make([]any, 0, ncols*(end-start))
		for i := start; i < end; i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString(tuple)
			args = row(i, args)
		}
		if _, err := tx.ExecContext(ctx, d.Rebind(q.String()), args...); err != nil {
			return err
		}
	}
	return nil
}
