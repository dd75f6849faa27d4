CREATE TABLE deliveries (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX deliveries_by_parent ON deliveries (parent, name);

CREATE TABLE workflows (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX workflows_by_parent ON workflows (parent, name);

CREATE TABLE notifications (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX notifications_by_parent ON notifications (parent, name);

