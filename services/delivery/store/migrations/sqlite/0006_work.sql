-- Work that outlives a request, leased to one replica at a time (see
-- pkg/lease): a running delivery, a resolution's rerun, the sweeper, the
-- expiry of held input.
CREATE TABLE work (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	subject TEXT NOT NULL DEFAULT '',
	trace TEXT NOT NULL DEFAULT '',
	holder TEXT NOT NULL DEFAULT '',
	token BIGINT NOT NULL DEFAULT 0,
	lease_until BIGINT NOT NULL DEFAULT 0,
	run_after BIGINT NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX work_due ON work (lease_until, run_after);

-- Deliveries running when this migration ran are leased to their
-- instance, already run out: their instance takes them back when it
-- starts, any other replica otherwise.
INSERT INTO work (id, kind, subject, holder, token, lease_until, attempts)
SELECT 'delivery:' || name, CASE WHEN state = 5 THEN 'resolve' ELSE 'delivery' END, name, owner, 1, 1, 1
FROM deliveries WHERE state IN (1, 2, 5);
