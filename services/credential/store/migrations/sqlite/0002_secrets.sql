-- Sealed secrets live apart from the credential rows so that no query that
-- reads a credential can carry its secret along by accident.
CREATE TABLE credential_secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    update_time INTEGER NOT NULL
);
