CREATE TABLE destinations (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BYTEA NOT NULL,
    etag        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX destinations_by_parent ON destinations (parent, name);

