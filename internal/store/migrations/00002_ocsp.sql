-- Pre-signed OCSP responses (issue #3). Same type conventions as 00001:
-- times are unix seconds, BYTEA holds DER (a blob in SQLite).
--
-- One row per certificate and CertID hash algorithm ('sha1', 'sha256',
-- 'sm3', ...). status, reason and revoked_at copy the certificate's state
-- at signing time; the responder serves a row only while they still match
-- the certificates row, so a response left stale by a crash between a
-- revocation and its re-signing is never served. refresh_at is when the
-- pre-signer re-signs the row: thisUpdate + validity/2 minus a random
-- jitter, so that re-signing spreads out over time.

-- +goose Up
CREATE TABLE ocsp_responses (
    ca_id       TEXT NOT NULL,
    serial      TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('good', 'revoked', 'hold')),
    reason      INTEGER NOT NULL DEFAULT 0,
    revoked_at  BIGINT NOT NULL DEFAULT 0,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    refresh_at  BIGINT NOT NULL,
    der         BYTEA NOT NULL,
    PRIMARY KEY (ca_id, serial, hash_alg),
    FOREIGN KEY (ca_id, serial) REFERENCES certificates (ca_id, serial)
);
-- The pre-signer's "what is due" query is a range scan on refresh_at.
CREATE INDEX ocsp_responses_refresh ON ocsp_responses (refresh_at);
-- Clean-up of responses past their nextUpdate.
CREATE INDEX ocsp_responses_next_update ON ocsp_responses (next_update);
-- Reconciliation looks at the few responses that are not "good" (the
-- predicate is repeated literally in the query so SQLite uses it).
CREATE INDEX ocsp_responses_revoked ON ocsp_responses (ca_id, serial) WHERE status <> 'good';

-- Responders poll revocation_events for changes made by processes that
-- do not notify them (the CLI, or any process on SQLite) and evict those
-- certificates from their caches.
CREATE INDEX revocation_events_created ON revocation_events (created_at);

-- +goose Down
DROP INDEX revocation_events_created;
DROP TABLE ocsp_responses;
