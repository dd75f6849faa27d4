-- Event subscriptions, and their webhook secrets sealed apart from the
-- resource so that no read of a subscription can carry one.
CREATE TABLE subscriptions (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    paused      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX subscriptions_by_parent ON subscriptions (parent, name);

CREATE TABLE subscription_secrets (
    name   TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
);

-- The outbox: events are written in the transaction of the change that
-- causes them; due is when the next send of one is due (Unix
-- microseconds), 0 once nothing is left to send.
CREATE TABLE events (
    name        TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    data        BLOB NOT NULL,
    etag        TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    delivery    TEXT NOT NULL DEFAULT '',
    type        INTEGER NOT NULL DEFAULT 0,
    due         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_by_parent ON events (parent, name);
CREATE INDEX events_by_due ON events (due);
