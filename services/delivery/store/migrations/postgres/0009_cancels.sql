-- A CancelDelivery asked of a delivery that runs, here or on another
-- replica: its holder (or whoever claims it next) stops it and settles it
-- cancelled, deleting the row in the same transaction.
CREATE TABLE cancels (
    delivery   TEXT PRIMARY KEY,
    keep_input INTEGER NOT NULL DEFAULT 0,
    subject    TEXT NOT NULL DEFAULT ''
);
