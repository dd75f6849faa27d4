-- The deliveries that hold staged input, for a tenant's share of staging,
-- which every new delivery checks: without it, each Deliver read every
-- delivery ever stored.
CREATE INDEX deliveries_holding_staging ON deliveries (parent) WHERE staged_held > 0;
