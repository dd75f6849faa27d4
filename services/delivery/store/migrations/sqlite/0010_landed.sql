-- What landed under a recorded key (JSON: bytes, parts, crc32c, sha256,
-- the fingerprint of the settings it was written with), so that retrying
-- a failed delivery's step keeps the objects that landed before it failed.
ALTER TABLE writes ADD COLUMN landed TEXT NOT NULL DEFAULT '';
