-- One schema for SQLite and PostgreSQL. Types are chosen so both engines
-- give them the intended meaning: BIGINT is a 64-bit integer in both (and
-- INTEGER affinity in SQLite), BYTEA is bytea in PostgreSQL and stores Go
-- []byte as a blob in SQLite, booleans are INTEGER 0/1. X.509 times
-- (validity, revocation, CRL update times) are unix seconds, the precision
-- X.509 itself has; created_at and audit times are unix nanoseconds so
-- that listings have a stable order. Ids are assigned by the application,
-- so there is no SERIAL/AUTOINCREMENT.

-- +goose Up
CREATE TABLE instance (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE cas (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    parent_id  TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL CHECK (role IN ('root', 'issuing')),
    key_ref    TEXT NOT NULL,
    cert_der   BYTEA NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE signers (
    id         TEXT PRIMARY KEY,
    ca_id      TEXT NOT NULL REFERENCES cas (id),
    purpose    TEXT NOT NULL,
    key_ref    TEXT NOT NULL,
    cert_der   BYTEA NOT NULL,
    serial     TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX signers_purpose ON signers (purpose, created_at);

-- The primary key is what makes serial numbers unique per CA: a second
-- insert of (ca_id, serial) fails in the database, whatever process does it.
CREATE TABLE certificates (
    ca_id           TEXT NOT NULL REFERENCES cas (id),
    serial          TEXT NOT NULL,
    profile         TEXT NOT NULL,
    department      TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL,
    sans            TEXT NOT NULL DEFAULT '[]',
    key_algorithm   TEXT NOT NULL,
    not_before      BIGINT NOT NULL,
    not_after       BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'good' CHECK (status IN ('good', 'revoked', 'hold')),
    reason          INTEGER NOT NULL DEFAULT 0,
    revoked_at      BIGINT NOT NULL DEFAULT 0,
    invalidity_date BIGINT NOT NULL DEFAULT 0,
    der             BYTEA NOT NULL,
    requested_by    TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (ca_id, serial)
);
-- Listing is newest first with keyset pagination on
-- (created_at, serial, ca_id); each filter gets an index that leads with
-- the filtered column and continues in that order, so a page is an index
-- range scan however deep it is. Revoked and held certificates are few,
-- so their indexes are partial: issuing a (good) certificate does not
-- touch them. Queries repeat the "status <> 'good'" predicate literally,
-- which is what lets SQLite use a partial index.
CREATE INDEX certificates_created ON certificates (created_at, serial, ca_id);
CREATE INDEX certificates_ca_created ON certificates (ca_id, created_at, serial);
CREATE INDEX certificates_department_created ON certificates (department, created_at, serial, ca_id);
CREATE INDEX certificates_profile_created ON certificates (profile, created_at, serial, ca_id);
CREATE INDEX certificates_revoked_created ON certificates (status, created_at, serial, ca_id)
    WHERE status <> 'good';
-- The CRL query: the revoked and held, unexpired certificates of one CA.
CREATE INDEX certificates_crl ON certificates (ca_id, not_after) WHERE status <> 'good';

-- One row per actual change of a certificate's revocation state.
CREATE TABLE revocation_events (
    ca_id           TEXT NOT NULL,
    serial          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('revoke', 'hold', 'unhold')),
    reason          INTEGER NOT NULL,
    at              BIGINT NOT NULL,
    invalidity_date BIGINT NOT NULL DEFAULT 0,
    by              TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (ca_id, serial, seq),
    FOREIGN KEY (ca_id, serial) REFERENCES certificates (ca_id, serial)
);

CREATE TABLE crls (
    ca_id       TEXT NOT NULL REFERENCES cas (id),
    number      BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der         BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (ca_id, number)
);

-- Only the SHA-256 of a token is stored: a database leak must not hand out
-- working credentials. Token times are unix nanoseconds, 0 meaning never.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_principal ON api_tokens (principal);

-- Hash-chained audit trail; each row's hash covers prev_hash.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    principal  TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL DEFAULT '',
    outcome    TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    details    TEXT NOT NULL DEFAULT '{}',
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE api_tokens;
DROP TABLE crls;
DROP TABLE revocation_events;
DROP TABLE certificates;
DROP TABLE signers;
DROP TABLE cas;
DROP TABLE instance;
