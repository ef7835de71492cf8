-- Electronic seals (issue #5). Same type conventions as 00001: validity
-- and signing times are unix seconds (the precision of GeneralizedTime in
-- the seal), created_at and status change times unix nanoseconds, BYTEA
-- holds DER and pictures (a blob in SQLite).
--
-- A seal's holder certificate is an issued certificate of ours; the stamp
-- insert joins it to refuse stamping once it is revoked. stamps.signature
-- is the signer's DER SEQUENCE{r, s}, not the whole SES_Signature: that
-- embeds the seal, picture included, which seals.der already holds once.
-- The value is unique per stamp (SM2 signing is randomised) and is how the
-- verifier finds the registry's record of a signature.

-- +goose Up
CREATE TABLE seals (
    id                 TEXT PRIMARY KEY,
    esid               TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    type               INTEGER NOT NULL,
    department         TEXT NOT NULL DEFAULT '',
    holder_ca_id       TEXT NOT NULL,
    holder_cert_serial TEXT NOT NULL,
    holder_key_ref     TEXT NOT NULL,
    maker_signer_id    TEXT NOT NULL REFERENCES signers (id),
    der                BYTEA NOT NULL,
    picture_type       TEXT NOT NULL,
    picture            BYTEA NOT NULL,
    width_mm           INTEGER NOT NULL,
    height_mm          INTEGER NOT NULL,
    valid_start        BIGINT NOT NULL,
    valid_end          BIGINT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    revocation_reason  TEXT NOT NULL DEFAULT '',
    created_by         TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    status_changed_at  BIGINT NOT NULL DEFAULT 0,
    status_changed_by  TEXT NOT NULL DEFAULT '',
    FOREIGN KEY (holder_ca_id, holder_cert_serial) REFERENCES certificates (ca_id, serial)
);
-- Listing is newest first, keyset-paginated on (created_at, id), like
-- certificates.
CREATE INDEX seals_created ON seals (created_at, id);
CREATE INDEX seals_department_created ON seals (department, created_at, id);
CREATE INDEX seals_status_created ON seals (status, created_at, id);
CREATE INDEX seals_holder ON seals (holder_ca_id, holder_cert_serial);

CREATE TABLE seal_grants (
    seal_id    TEXT NOT NULL REFERENCES seals (id),
    principal  TEXT NOT NULL,
    granted_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (seal_id, principal)
);

CREATE TABLE stamps (
    id            TEXT PRIMARY KEY,
    seal_id       TEXT NOT NULL REFERENCES seals (id),
    principal     TEXT NOT NULL,
    at            BIGINT NOT NULL,
    data_hash     BYTEA NOT NULL,
    property_info TEXT NOT NULL DEFAULT '',
    approval_ref  TEXT NOT NULL DEFAULT '',
    signature     BYTEA NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX stamps_seal_created ON stamps (seal_id, created_at, id);

-- +goose Down
DROP TABLE stamps;
DROP TABLE seal_grants;
DROP TABLE seals;
