-- Every session and order belongs to a user that exists. The foreign keys promise it; reading both
-- sides in full proves the restored heap and its primary-key index agree.
SELECT NOT EXISTS (SELECT 1 FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id))
   AND NOT EXISTS (SELECT 1 FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id));
