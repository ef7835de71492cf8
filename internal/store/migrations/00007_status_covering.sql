-- The OCSP responder reads a certificate's status (status, reason,
-- revocation time, expiry) by (ca_id, serial) thousands of times a second:
-- to confirm cached responses before they expire, and on every stored
-- response it loads. Through the primary key each read was an index
-- lookup followed by a random read of the certificate row, about 1 KB of
-- DER that the status does not need; on SQLite, whose page cache held
-- little of either, that was several file reads per status. This index
-- carries the four columns, so a status is an index-only lookup in a
-- structure of about 60 bytes a certificate (6 MB for 100 000) that stays
-- in the page cache. SQLite prefers the unique primary-key index for an
-- equality on the whole key, so the SQLite queries name this one with
-- INDEXED BY; PostgreSQL picks an index-only scan itself.

-- +goose Up
CREATE INDEX certificates_status ON certificates (ca_id, serial, status, reason, revoked_at, not_after);

-- +goose Down
DROP INDEX IF EXISTS certificates_status;
