-- What the health watcher last found of each subject it checks (a
-- destination in use, a credential's key age), so that a warning is
-- raised when a check that passed starts failing, and cleared when it
-- passes again.
CREATE TABLE health (
    subject      TEXT PRIMARY KEY,
    failing      INTEGER NOT NULL DEFAULT 0,
    reason       TEXT NOT NULL DEFAULT '',
    notification TEXT NOT NULL DEFAULT '',
    checks       BIGINT NOT NULL DEFAULT 0,
    checked      BIGINT NOT NULL DEFAULT 0,
    checked_by   TEXT NOT NULL DEFAULT ''
);
