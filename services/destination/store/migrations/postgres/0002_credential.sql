-- Destinations are found by the credential they use, so that a credential
-- in use is not deleted from under them.
ALTER TABLE destinations ADD COLUMN credential TEXT NOT NULL DEFAULT '';
CREATE INDEX destinations_by_credential ON destinations (parent, credential);
