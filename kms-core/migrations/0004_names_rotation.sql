-- Names (the KMIP Name attribute), so Locate can filter on them in SQL (with the owner and
-- tag indexes; no index on the low-selectivity type, algorithm and length columns, which
-- every Create would pay for), and the time each key with a rotation policy is next due for
-- automatic rotation (indexed only where set, so keys without a policy cost nothing).
CREATE TABLE object_names (
    uid TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (uid, name)
);
CREATE INDEX object_names_name ON object_names (name);
ALTER TABLE objects ADD COLUMN rotate_at BIGINT;
CREATE INDEX objects_rotate_at ON objects (rotate_at) WHERE rotate_at IS NOT NULL;
