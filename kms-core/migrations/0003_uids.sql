-- Every uid ever used. A row is never deleted (Destroy with Remove deletes the object, not
-- this row), so a removed object's uid can never be taken by a new Create or Import: the
-- identifier someone configured (an API token key, a grant, a tag lookup) cannot come back
-- as another user's key.
CREATE TABLE uids (
    uid TEXT PRIMARY KEY,
    first_used BIGINT NOT NULL
);
INSERT INTO uids (uid, first_used) SELECT uid, created_at FROM objects;
