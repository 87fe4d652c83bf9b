-- The restored shop has customers, sessions and orders: a restore that came back with an empty
-- table (a wrong backup, a schema-only copy) fails here. Smoke queries return one boolean, true.
SELECT EXISTS (SELECT 1 FROM users)
   AND EXISTS (SELECT 1 FROM sessions)
   AND EXISTS (SELECT 1 FROM orders);
