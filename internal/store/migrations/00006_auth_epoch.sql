-- The authentication epoch: a counter that every change to what decides
-- a bearer token's authentication (api_tokens, principals,
-- principal_roles) increments in the same transaction. A server keeps the
-- results of token lookups in memory while the epoch stays the same, so a
-- request costs no database query, and a change made by another process
-- (the CLI on the same database, another replica) reaches it as soon as
-- it next reads the counter.

-- +goose Up
CREATE TABLE auth_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

-- +goose Down
DROP TABLE auth_epoch;
