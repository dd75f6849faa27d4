-- What ListWorkflows and ListNotifications filter on, and what decides who
-- may see them: the destination of their delivery.
ALTER TABLE workflows ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE workflows ADD COLUMN state INTEGER NOT NULL DEFAULT 0;
CREATE INDEX workflows_by_state ON workflows (parent, state, name);
ALTER TABLE notifications ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX notifications_by_acknowledged ON notifications (parent, acknowledged, name);
