-- Seed data for the demo schema (schema.sql), generated inside the server with generate_series:
-- no client round trips, so 100k users and 1M sessions load in seconds.
--
-- Size: the custom setting pgwarden.demo_users (default 100000). Each user has ~10 sessions
-- (pgwarden.demo_sessions_per_user) and ~3 orders. The data is deterministic for a given size
-- (setseed) and relative to the moment it is loaded:
--   * ~8% of users are soft-deleted, spread from years ago to the last few days, so the GDPR erasure
--     pipeline finds both users past the grace period and users still inside it; 1 in 40 of them is
--     on legal hold (users.legal_hold), which erasure never touches;
--   * sessions come from the last 45 days with 1-day, 30-day or 90-day lifetimes, so roughly half are
--     expired when loaded (and more every day the demo data ages) for the TTL purge pipeline;
--   * orders span each user's life, including closed accounts (kept for accounting).
--
-- By hand, into an empty database:
--   psql -d appdb -v ON_ERROR_STOP=1 -f schema.sql
--   PGOPTIONS='-c pgwarden.demo_users=100000' psql -d appdb -v ON_ERROR_STOP=1 -f seed.sql
--   psql -d appdb -v ON_ERROR_STOP=1 -f indexes.sql
-- Expects empty tables; runs in one transaction.

BEGIN;
SET LOCAL synchronous_commit = off;
SET LOCAL work_mem = '256MB';          -- sorts by time in memory
SET LOCAL jit = off;                   -- compiling costs more than it saves here
-- Rows are generated consistent with their foreign keys (sessions and orders join users), so the
-- per-row foreign-key triggers are skipped during the load (a superuser's bulk-load switch) and the
-- result is checked once at the end instead.
SET LOCAL session_replication_role = replica;
SELECT setseed(0.4242);

CREATE TEMP TABLE seed_params ON COMMIT DROP AS
SELECT coalesce(nullif(current_setting('pgwarden.demo_users', true), ''), '100000')::int AS users,
       coalesce(nullif(current_setting('pgwarden.demo_sessions_per_user', true), ''), '10')::int
           AS sessions_per_user,
       3 AS orders_per_user,
       now() AS t0;

-- Reference lists, as functions the planner inlines into constants (a table's arrays would be
-- read again for every generated row). Countries come with their calling code, locale and
-- currency at the same position; earlier entries are picked more often.

CREATE FUNCTION pg_temp.first_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['James','Mary','Liam','Olivia','Noah','Emma','Oliver','Ava','Elijah','Sophia','Lucas',
             'Isabella','Mateo','Mia','Ethan','Amelia','Aiden','Harper','José','Zoë','Søren','Aoife',
             'Chloé','Björn','Priya','Arjun','Yuki','Hiroshi','Fatima','Omar','Wei','Mei','Nguyen',
             'Lars','Ingrid','Paulo','Ana','Dmitri','Olga','Kwame','Amara','Siobhan','Rafael','Lucía',
             'Jan','Agnieszka','Giulia','Marco','Hannah','Felix']::text[]
$$;

CREATE FUNCTION pg_temp.last_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez',
             'Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore',
             'Müller','Schmidt','Schneider','Fischer','Dubois','Lefèvre','Rossi','Russo','Ferrari',
             'Kowalski','Nowak','Andersson','Johansson','Nielsen','Jensen','O''Brien','Murphy',
             'Kelly','Sato','Suzuki','Takahashi','Patel','Sharma','Singh','Kim','Lee','Park','Chen',
             'Wang','Silva','Santos','Ivanova']::text[]
$$;

CREATE FUNCTION pg_temp.domains() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['gmail.com','yahoo.com','outlook.com','hotmail.com','icloud.com','proton.me','gmx.de',
             'web.de','orange.fr','libero.it','wp.pl','example.com','fastmail.com','aol.com']::text[]
$$;

CREATE FUNCTION pg_temp.countries() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['US','GB','DE','FR','CA','ES','IT','NL','IN','BR','AU','SE','PL','JP','MX','IE']::text[]
$$;

CREATE FUNCTION pg_temp.calling_codes() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['+1','+44','+49','+33','+1','+34','+39','+31','+91','+55','+61','+46','+48','+81','+52',
             '+353']::text[]
$$;

CREATE FUNCTION pg_temp.locales() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['en-US','en-GB','de-DE','fr-FR','en-CA','es-ES','it-IT','nl-NL','en-IN','pt-BR','en-AU',
             'sv-SE','pl-PL','ja-JP','es-MX','en-IE']::text[]
$$;

CREATE FUNCTION pg_temp.currencies() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['USD','GBP','EUR','EUR','CAD','EUR','EUR','EUR','INR','BRL','AUD','SEK','PLN','JPY','MXN',
             'EUR']::text[]
$$;

CREATE FUNCTION pg_temp.streets() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['Main St','Oak Ave','High Street','Bahnhofstraße','Rue de la Paix','Via Roma',
             'Calle Mayor','Kerkstraat','Park Lane','Maple Drive','Church Road','Station Road',
             'Elm Street','Queen Street','Lindenweg','Avenida Paulista']::text[]
$$;

CREATE FUNCTION pg_temp.cities() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['Springfield','London','Berlin','Paris','Toronto','Madrid','Milan','Amsterdam','Mumbai',
             'São Paulo','Sydney','Stockholm','Kraków','Osaka','Guadalajara','Dublin','Austin',
             'Manchester','Hamburg','Lyon']::text[]
$$;

CREATE FUNCTION pg_temp.user_agents() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
             'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
             'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
             'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36',
             'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
             'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0',
             'ShopApp/4.12.1 (iOS 17.4; iPhone15,2)',
             'ShopApp/4.11.0 (Android 13; SM-S911B)']::text[]
$$;

-- Users: sign-ups over three years, more of them recent; ~8% closed their account since.
INSERT INTO users (email, full_name, phone, date_of_birth, country, locale, marketing_opt_in,
                   created_at, updated_at, last_login_at, deleted_at)
SELECT lower(translate(
           CASE u.email_style
               WHEN 0 THEN u.first_name || '.' || u.last_name || u.g
               WHEN 1 THEN left(u.first_name, 1) || u.last_name || u.g
               WHEN 2 THEN u.first_name || '_' || u.g
               ELSE u.last_name || '.' || u.first_name || u.g
           END,
           'áàâãäåçéèêëíìîïñóòôõöøúùûüýÿß''', 'aaaaaaceeeeiiiinoooooouuuuyys'))
           || '@' || (pg_temp.domains())[1 + floor(random() * array_length(pg_temp.domains(), 1))::int],
       u.first_name || ' ' || u.last_name,
       CASE WHEN random() < 0.85 THEN
           (pg_temp.calling_codes())[u.k] || ' ' || (200 + floor(random() * 800))::int || ' '
               || lpad(floor(random() * 10000000)::int::text, 7, '0')
       END,
       CASE WHEN random() < 0.9 THEN date '1950-01-01' + floor(random() * 20000)::int END,
       (pg_temp.countries())[u.k],
       (pg_temp.locales())[u.k],
       random() < 0.35,
       u.created_at,
       coalesce(u.deleted_at, u.created_at + (p.t0 - u.created_at) * random()),
       CASE WHEN random() < 0.95 THEN
           u.created_at + (coalesce(u.deleted_at, p.t0) - u.created_at) * (1 - power(random(), 4))
       END,
       u.deleted_at
FROM seed_params AS p,
LATERAL (
    SELECT s.*,
           CASE WHEN random() < 0.08 THEN s.created_at + (p.t0 - s.created_at) * random() END AS deleted_at
    FROM (
        SELECT g,
               (pg_temp.first_names())[1 + floor(random() * array_length(pg_temp.first_names(), 1))::int] AS first_name,
               (pg_temp.last_names())[1 + floor(random() * array_length(pg_temp.last_names(), 1))::int] AS last_name,
               1 + floor(power(random(), 2.2) * array_length(pg_temp.countries(), 1))::int AS k,
               floor(random() * 4)::int AS email_style,
               p.t0 - interval '3 years' * power(random(), 1.6) AS created_at
        FROM generate_series(1, p.users) AS g
    ) AS s
) AS u
ORDER BY u.created_at;

-- Sessions: from the last 45 days of each user's active life; 25% one-day, 70% 30-day and 5%
-- 90-day lifetimes. Users who closed their account only have sessions from before that.
INSERT INTO sessions (user_id, token, ip_address, user_agent, created_at, last_seen_at, expires_at)
SELECT s.user_id,
       encode(sha256(convert_to(s.g::text || ':' || random()::text, 'UTF8')), 'hex'),
       CASE WHEN random() < 0.1
           THEN ('2001:db8:' || to_hex(floor(random() * 65535)::int) || '::'
                 || to_hex(floor(random() * 65535)::int))::inet
           ELSE ((1 + floor(random() * 223))::int || '.' || floor(random() * 256)::int || '.'
                 || floor(random() * 256)::int || '.' || (1 + floor(random() * 254))::int)::inet
       END,
       (pg_temp.user_agents())[1 + floor(power(random(), 1.5) * array_length(pg_temp.user_agents(), 1))::int],
       s.created_at,
       s.created_at + (least(s.created_at + s.lifetime, p.t0) - s.created_at) * random(),
       s.created_at + s.lifetime
FROM seed_params AS p,
LATERAL (
    SELECT r.g, u.id AS user_id,
           greatest(u.created_at,
                    coalesce(u.deleted_at, p.t0) - interval '45 days' * random()) AS created_at,
           CASE WHEN r.kind < 0.25 THEN interval '1 day'
                WHEN r.kind < 0.95 THEN interval '30 days'
                ELSE interval '90 days' END AS lifetime
    FROM (
        SELECT g, 1 + floor(random() * p.users)::bigint AS user_id, random() AS kind
        FROM generate_series(1, p.users * p.sessions_per_user) AS g
    ) AS r
    JOIN users AS u ON u.id = r.user_id
) AS s
ORDER BY s.created_at;

-- Orders: across each user's life; recent ones still in flight, older ones mostly delivered.
INSERT INTO orders (user_id, status, amount, currency, item_count, shipping_address, created_at, updated_at)
SELECT o.user_id,
       CASE
           WHEN o.created_at > p.t0 - interval '2 days' THEN (ARRAY['pending','paid','paid'])[1 + floor(o.r * 3)::int]
           WHEN o.created_at > p.t0 - interval '7 days' THEN (ARRAY['paid','shipped','shipped','delivered'])[1 + floor(o.r * 4)::int]
           WHEN o.r < 0.85 THEN 'delivered'
           WHEN o.r < 0.93 THEN 'cancelled'
           ELSE 'refunded'
       END,
       round((4.99 + exp(random() * 6.2))::numeric, 2),
       (pg_temp.currencies())[array_position(pg_temp.countries(), o.country::text)],
       1 + floor(power(random(), 3) * 8)::int,
       (1 + floor(random() * 400))::int || ' ' || (pg_temp.streets())[1 + floor(random() * array_length(pg_temp.streets(), 1))::int]
           || ', ' || (pg_temp.cities())[1 + floor(random() * array_length(pg_temp.cities(), 1))::int]
           || ' ' || lpad(floor(random() * 99999)::int::text, 5, '0'),
       o.created_at,
       o.created_at + interval '4 days' * random()
FROM seed_params AS p,
LATERAL (
    SELECT u.id AS user_id, u.country,
           u.created_at + (coalesce(u.deleted_at, p.t0) - u.created_at) * random() AS created_at,
           random() AS r
    FROM (
        SELECT 1 + floor(power(random(), 1.3) * p.users)::bigint AS user_id
        FROM generate_series(1, p.users * p.orders_per_user)
    ) AS pick
    JOIN users AS u ON u.id = pick.user_id
) AS o
ORDER BY o.created_at;

-- Legal holds: a few closed accounts (1 in 40) are kept for litigation; GDPR erasure must not touch them.
UPDATE users SET legal_hold = true WHERE deleted_at IS NOT NULL AND id % 40 = 0;

-- Audit notes: one for every other user over the last year; 30% retracted (soft-deleted) since, so
-- some are past the 90-day hard-delete horizon and some are not.
INSERT INTO audit_notes (user_id, note, created_at, deleted_at)
SELECT n.user_id, n.note, n.created_at,
       CASE WHEN random() < 0.3 THEN n.created_at + (p.t0 - n.created_at) * random() END
FROM seed_params AS p,
LATERAL (
    SELECT u.id AS user_id,
           (ARRAY['identity verified', 'refund approved', 'address corrected', 'fraud check passed'])
               [1 + floor(random() * 4)::int] AS note,
           greatest(u.created_at, p.t0 - interval '365 days' * random()) AS created_at
    FROM users AS u
    WHERE u.id % 2 = 0
) AS n
ORDER BY n.created_at;

-- The foreign-key check skipped above, once for all rows.
DO $$
BEGIN
    IF EXISTS (SELECT FROM sessions AS s WHERE NOT EXISTS (SELECT FROM users AS u WHERE u.id = s.user_id))
       OR EXISTS (SELECT FROM orders AS o WHERE NOT EXISTS (SELECT FROM users AS u WHERE u.id = o.user_id))
       OR EXISTS (SELECT FROM audit_notes AS a WHERE NOT EXISTS (SELECT FROM users AS u WHERE u.id = a.user_id))
    THEN
        RAISE EXCEPTION 'demo seed generated rows without a user';
    END IF;
END
$$;

COMMIT;
