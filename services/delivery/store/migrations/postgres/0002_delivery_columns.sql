-- Filters of ListDeliveries, and the idempotency key: one delivery per
-- destination and key (NULL, for deliveries without a key, never collides).
ALTER TABLE deliveries ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN state INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN idempotency TEXT;
CREATE INDEX deliveries_by_destination ON deliveries (parent, destination, name);
CREATE INDEX deliveries_by_state ON deliveries (parent, state, name);
CREATE UNIQUE INDEX deliveries_by_idempotency ON deliveries (idempotency);
