CREATE TABLE credentials (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BYTEA NOT NULL,
    etag        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX credentials_by_parent ON credentials (parent, name);

