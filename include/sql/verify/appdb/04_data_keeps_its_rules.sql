-- The data keeps its own rules after the restore: no account closed before it was opened, no
-- session that expires before it starts, no order with a negative amount.
SELECT NOT EXISTS (SELECT 1 FROM users WHERE deleted_at < created_at)
   AND NOT EXISTS (SELECT 1 FROM sessions WHERE expires_at <= created_at)
   AND NOT EXISTS (SELECT 1 FROM orders WHERE amount < 0);
