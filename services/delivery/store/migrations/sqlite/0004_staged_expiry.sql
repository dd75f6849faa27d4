-- When a delivery's staged input is deleted unless it is resolved (0 when
-- nothing held expires): what the expiry pass looks for.
ALTER TABLE deliveries ADD COLUMN staged_expire BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deliveries_by_staged_expire ON deliveries (staged_expire);
