-- Every index of the shop's tables is valid and ready: a restore taken while an index was being
-- built concurrently (or one that failed half-way) would leave an index the planner cannot use.
SELECT coalesce(bool_and(i.indisvalid AND i.indisready), false)
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
 WHERE t.relnamespace = 'public'::regnamespace
   AND t.relname IN ('users', 'sessions', 'orders');
