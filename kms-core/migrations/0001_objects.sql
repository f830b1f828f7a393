-- Managed objects, their tags and the access grants. One schema for SQLite and PostgreSQL:
-- only TEXT and BIGINT columns. Key material is stored wrapped (never in clear).
CREATE TABLE objects (
    uid TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    object_type TEXT NOT NULL,
    state TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    length_bits BIGINT NOT NULL,
    usage_mask BIGINT NOT NULL,
    activation_date BIGINT,
    deactivation_date BIGINT,
    created_at BIGINT NOT NULL,
    last_change BIGINT NOT NULL,
    wrapped_key TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX objects_owner ON objects (owner);

CREATE TABLE object_tags (
    uid TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (uid, tag)
);
CREATE INDEX object_tags_tag ON object_tags (tag);

CREATE TABLE grants (
    uid TEXT NOT NULL,
    user_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    PRIMARY KEY (uid, user_id, operation)
);
CREATE INDEX grants_user ON grants (user_id);
