-- Secondary indexes of the demo schema, created after seed.sql's bulk load (see schema.sql).
-- They are what the application, and pgwarden's batched TTL purge and GDPR erasure, rely on.
SET maintenance_work_mem = '256MB';

CREATE UNIQUE INDEX IF NOT EXISTS users_email_active_key ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS users_created_at_idx ON users (created_at);
CREATE INDEX IF NOT EXISTS users_deleted_at_idx ON users (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE UNIQUE INDEX IF NOT EXISTS sessions_token_key ON sessions (token);
CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);

CREATE INDEX IF NOT EXISTS audit_notes_user_id_idx ON audit_notes (user_id);

CREATE INDEX IF NOT EXISTS orders_user_id_created_at_idx ON orders (user_id, created_at);
CREATE INDEX IF NOT EXISTS orders_created_at_idx ON orders (created_at);

ANALYZE users;
ANALYZE sessions;
ANALYZE orders;
ANALYZE audit_notes;
