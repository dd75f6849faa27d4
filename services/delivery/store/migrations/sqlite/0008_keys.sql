-- Keys the replicas share, made once by whichever starts first: the key
-- that seals page tokens, so that a token says nothing to its caller and
-- any replica can open it.
CREATE TABLE keys (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
