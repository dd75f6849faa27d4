-- The bytes of a delivery's input kept after it stopped (failed, or
-- interrupted and resumable; 0 otherwise): what counts against its
-- tenant's share of staging.
ALTER TABLE deliveries ADD COLUMN staged_held BIGINT NOT NULL DEFAULT 0;
