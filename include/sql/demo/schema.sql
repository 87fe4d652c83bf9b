-- The demo application's schema: a small shop with the data shapes pgwarden's pipelines care about.
--
--   users     personal data (email, full_name, phone, date_of_birth), soft delete through deleted_at;
--             the GDPR erasure pipeline anonymises rows whose deleted_at is past the grace period,
--             except those on legal_hold
--   sessions  login sessions with expires_at; the TTL purge pipeline deletes expired ones in batches
--   audit_notes  staff notes on accounts (an audit trail); a retracted note is soft-deleted through
--             deleted_at and hard-deleted 90 days later by the TTL purge pipeline
--   orders    kept for accounting after a user is erased, so they reference users (no cascade) and
--             carry their own personal data (shipping address) that erasure must also scrub
--
-- Load order (scripts/demo.py does this in database `appdb`): schema.sql, seed.sql, indexes.sql.
-- Secondary indexes come after the bulk load: building them once is ~3x faster than maintaining
-- them row by row (the random session tokens especially). Safe to run again.

CREATE TABLE IF NOT EXISTS users (
    id               bigserial   PRIMARY KEY,
    email            text        NOT NULL,
    full_name        text        NOT NULL,
    phone            text,
    date_of_birth    date,
    country          char(2)     NOT NULL,
    locale           text        NOT NULL DEFAULT 'en-US',
    marketing_opt_in boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_login_at    timestamptz,
    deleted_at       timestamptz,
    legal_hold       boolean     NOT NULL DEFAULT false,
    CONSTRAINT users_deleted_after_created CHECK (deleted_at IS NULL OR deleted_at >= created_at)
);
COMMENT ON TABLE users IS 'Customers. Personal data: email, full_name, phone, date_of_birth. Soft delete: deleted_at.';
COMMENT ON COLUMN users.deleted_at IS 'Set when the user closes the account; personal data is erased after the grace period.';
COMMENT ON COLUMN users.legal_hold IS 'Set by legal/compliance: the account''s data must be kept (litigation); never erased while set.';

CREATE TABLE IF NOT EXISTS sessions (
    id          bigserial   PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token       text        NOT NULL,
    ip_address  inet,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT sessions_expire_after_creation CHECK (expires_at > created_at)
);
COMMENT ON TABLE sessions IS 'Login sessions. Rows past expires_at are purged by the TTL pipeline.';

CREATE TABLE IF NOT EXISTS orders (
    id               bigserial     PRIMARY KEY,
    user_id          bigint        NOT NULL REFERENCES users (id),
    status           text          NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')),
    amount           numeric(12,2) NOT NULL CHECK (amount >= 0),
    currency         char(3)       NOT NULL DEFAULT 'USD',
    item_count       integer       NOT NULL DEFAULT 1 CHECK (item_count > 0),
    shipping_address text,
    created_at       timestamptz   NOT NULL DEFAULT now(),
    updated_at       timestamptz   NOT NULL DEFAULT now()
);
COMMENT ON TABLE orders IS 'Orders, kept for accounting after erasure. Personal data: shipping_address.';

CREATE TABLE IF NOT EXISTS audit_notes (
    id          bigserial   PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    note        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT audit_notes_deleted_after_created CHECK (deleted_at IS NULL OR deleted_at >= created_at)
);
COMMENT ON TABLE audit_notes IS 'Staff notes on accounts. Soft delete: deleted_at; hard-deleted 90 days after that.';
