-- Per-user settings of the shop's front end (a new table: it locks nothing that exists).
-- Applied by the appdb.migrate DAG in one transaction, after a restore point; undone by the .down.sql.
CREATE TABLE user_preferences (
    user_id     bigint      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    theme       text        NOT NULL DEFAULT 'light' CHECK (theme IN ('light', 'dark')),
    newsletter  boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE user_preferences IS 'Front-end settings per user; no personal data.';
