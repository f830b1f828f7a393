-- Which key-encryption key wraps each key: the master key file ('master') or the HSM KEK
-- ('hsm'). Rows written before this column existed were wrapped by the master key.
ALTER TABLE objects ADD COLUMN wrapping TEXT NOT NULL DEFAULT 'master';
