-- Locate filters on these columns in SQL.
CREATE INDEX objects_kind ON objects (object_type, algorithm, length_bits);
CREATE INDEX objects_created ON objects (created_at, uid);
