CREATE TABLE destinations (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX destinations_by_parent ON destinations (parent, name);

