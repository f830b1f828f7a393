-- Names (the KMIP Name attribute), so Locate can filter on them in SQL, and the time each key
-- with a rotation policy is next due for automatic rotation.
CREATE TABLE object_names (
    uid TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (uid, name)
);
CREATE INDEX object_names_name ON object_names (name);
ALTER TABLE objects ADD COLUMN rotate_at BIGINT;
CREATE INDEX objects_rotate_at ON objects (rotate_at);
