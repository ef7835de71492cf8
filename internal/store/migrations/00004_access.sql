-- Access control and the audit chain (issue #6). Same conventions as
-- 00001: times are unix nanoseconds, booleans INTEGER 0/1, BYTEA is a blob
-- in SQLite.

-- +goose Up
-- People (RA officers, administrators, auditors) and services (approval
-- systems). Roles are checked against policies/authz.yaml by the
-- application, not by a CHECK here, so that a new role needs no migration.
CREATE TABLE principals (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('person', 'service')),
    department TEXT NOT NULL DEFAULT '',
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE principal_roles (
    principal TEXT NOT NULL REFERENCES principals (name),
    role      TEXT NOT NULL,
    PRIMARY KEY (principal, role)
);

-- A client certificate from our CA maps to a principal by its serial
-- (lower-case hex, as in certificates.serial) or by its exact subject
-- (RFC 4514 string, as in certificates.subject); a serial binding wins.
-- A certificate matching no binding authenticates nobody.
CREATE TABLE client_cert_bindings (
    kind       TEXT NOT NULL CHECK (kind IN ('subject', 'serial')),
    value      TEXT NOT NULL,
    principal  TEXT NOT NULL REFERENCES principals (name),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX client_cert_bindings_principal ON client_cert_bindings (principal);

-- Before this migration every token was an administrator's (the only
-- kind there was): keep them working by making their principals admins.
INSERT INTO principals (name, kind, department, disabled, created_at, updated_at)
    SELECT principal, 'person', '', 0, MIN(created_at), MIN(created_at) FROM api_tokens GROUP BY principal;
INSERT INTO principal_roles (principal, role) SELECT name, 'admin' FROM principals;

-- The end of the audit chain: seq and hash of the last entry. Every append
-- reads it under a row lock (FOR UPDATE on PostgreSQL; SQLite has one
-- writer) and moves it in the same transaction, so sequence numbers have
-- no gaps and prev_hash is right even with several processes. An empty
-- hash stands for the 32 zero bytes of the genesis (there is no portable
-- blob literal).
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_object ON audit_log (object, seq);

-- Signed statements of the chain head (see internal/audit).
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       BYTEA NOT NULL,
    at         BIGINT NOT NULL,
    cert_der   BYTEA NOT NULL,
    algorithm  TEXT NOT NULL,
    signature  BYTEA NOT NULL
);

-- +goose Down
DROP TABLE audit_checkpoints;
DROP INDEX audit_log_object;
DROP INDEX audit_log_action;
DROP INDEX audit_log_principal;
DROP TABLE audit_head;
DROP TABLE client_cert_bindings;
DROP TABLE principal_roles;
DROP TABLE principals;
