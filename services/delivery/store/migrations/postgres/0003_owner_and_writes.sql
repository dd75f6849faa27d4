-- The service instance running each delivery, so that a restarted
-- instance finds the deliveries it was running when it stopped.
ALTER TABLE deliveries ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX deliveries_by_owner ON deliveries (owner, state);

-- Every object a running delivery is writing or has written, and its
-- multipart upload, recorded before the first byte goes to S3: what a
-- failed or interrupted delivery must take back, even after a crash.
CREATE TABLE writes (
    delivery    TEXT NOT NULL,
    bucket      TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    upload_id   TEXT NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    PRIMARY KEY (delivery, object_key)
);
