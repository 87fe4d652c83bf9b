"""A realistic benchmark database, built server-side, and the one server every backup scenario shares.

Why not pgbench: its rows are mostly blank filler, so a backup of it compresses ~100× and any
compression or upload step looks free. Here the rows look like an online shop's: users with names,
e-mail addresses, phone numbers, postal addresses, JSON preferences and tag arrays; orders with
amounts, currencies, statuses, timestamps and free-text notes; events with JSON payloads, random
session UUIDs, IP addresses and user agents. Names and words come from small vocabularies (like real
data, which repeats itself), while ids, amounts, timestamps, UUIDs and hashes are random, so the
files compress about 3× with gzip, like a real application database.

Everything is generated inside PostgreSQL (``generate_series`` + ``random()``/``md5()``/arrays/
``jsonb_build_object``) in batches of one transaction each, so 1 GB takes a few minutes on a small
machine. The random seed is fixed per batch: the same scale gives the same data.

``shared_dataset(ctx)`` builds it at most once per ``python -m bench.run`` process and keeps the
server running for every backup scenario of the run (it is removed when the process exits).
"""

from __future__ import annotations

import atexit
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from bench.harness import BenchmarkError, Context

DATABASE = "shopdb"
# Rows per unit of scale; scale 1.0 is about 1 GB on disk, indexes included.
USERS_PER_SCALE = 500_000
ORDERS_PER_SCALE = 1_800_000
EVENTS_PER_SCALE = 1_100_000
BATCH_ROWS = 250_000

# A server sized like a small production one, not like the tests' (shared_buffers 32MB): the
# load and the write workload must not be dominated by checkpoints.
SERVER_SETTINGS = {
    "shared_buffers": "256MB",
    "max_connections": "40",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "256MB",
    "work_mem": "16MB",
    "synchronous_commit": "on",
}

SCHEMA = """
DROP TABLE IF EXISTS events, orders, users;
CREATE TABLE users (
    id            bigint PRIMARY KEY,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    email         text NOT NULL,
    password_hash text NOT NULL,
    phone         text,
    street        text NOT NULL,
    city          text NOT NULL,
    postal_code   text NOT NULL,
    country       char(2) NOT NULL,
    birth_date    date,
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz,
    is_active     boolean NOT NULL,
    tags          text[] NOT NULL,
    preferences   jsonb NOT NULL
);
CREATE TABLE orders (
    id               bigint PRIMARY KEY,
    user_id          bigint NOT NULL,
    status           text NOT NULL,
    amount           numeric(12, 2) NOT NULL,
    currency         char(3) NOT NULL,
    items            integer NOT NULL,
    payment_method   text NOT NULL,
    payment_ref      text NOT NULL,
    coupon_code      text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    shipping_address text NOT NULL,
    note             text
);
CREATE TABLE events (
    id          bigint PRIMARY KEY,
    user_id     bigint NOT NULL,
    kind        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    session_id  uuid NOT NULL,
    ip          inet NOT NULL,
    user_agent  text NOT NULL,
    payload     jsonb NOT NULL
);
"""

# Vocabularies as SQL functions so every INSERT can pick from them per row.
VOCABULARY = """
CREATE OR REPLACE FUNCTION pick(words text[], r double precision) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT words[1 + floor(r * array_length(words, 1))::int] $$;
CREATE OR REPLACE FUNCTION first_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[
 'James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth','William',
 'Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah','Charles','Karen','Christopher','Lisa',
 'Daniel','Nancy','Matthew','Betty','Anthony','Sandra','Mark','Margaret','Donald','Ashley','Steven',
 'Kimberly','Paul','Emily','Andrew','Donna','Joshua','Michelle','Kenneth','Carol','Kevin','Amanda','Brian',
 'Melissa','George','Deborah','Timothy','Stephanie','Ronald','Rebecca','Jason','Sharon','Edward','Laura',
 'Jeffrey','Cynthia','Ryan','Dorothy','Jacob','Amy','Gary','Kathleen','Nicholas','Angela','Eric','Shirley',
 'Jonathan','Emma','Stephen','Brenda','Larry','Pamela','Justin','Nicole','Scott','Anna','Brandon','Samantha',
 'Benjamin','Katherine','Samuel','Christine','Gregory','Debra','Alexander','Rachel','Patrick','Carolyn',
 'Frank','Janet','Raymond','Maria','Jack','Olivia','Dennis','Heather','Jerry','Helen','Tyler','Catherine',
 'Aaron','Diane','Jose','Julie','Adam','Victoria','Nathan','Joyce','Henry','Lauren','Zachary','Kelly',
 'Douglas','Christina','Peter','Ruth','Kyle','Joan','Noah','Virginia','Ethan','Judith','Jeremy','Evelyn',
 'Christian','Hannah','Walter','Andrea','Keith','Megan','Austin','Cheryl','Roger','Jacqueline','Terry',
 'Madison','Sean','Teresa','Gerald','Abigail','Carl','Sophia','Dylan','Martha','Harold','Sara','Jordan',
 'Gloria','Jesse','Janice','Bryan','Kathryn','Lawrence','Ann','Arthur','Isabella','Gabriel','Judy','Bruce',
 'Charlotte','Logan','Julia','Billy','Grace','Joe','Amber','Alan','Alice','Juan','Jean','Elijah','Denise',
 'Willie','Frances','Albert','Danielle','Wayne','Marilyn','Randy','Natalie','Mason','Beverly','Vincent',
 'Diana','Liam','Brittany','Roy','Theresa','Bobby','Kayla','Caleb','Alexis','Bradley','Doris','Russell',
 'Lori','Lucas','Tiffany'] $$;
CREATE OR REPLACE FUNCTION last_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[
 'Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez','Hernandez',
 'Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin','Lee','Perez',
 'Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young','Allen','King',
 'Wright','Scott','Torres','Nguyen','Hill','Flores','Green','Adams','Nelson','Baker','Hall','Rivera',
 'Campbell','Mitchell','Carter','Roberts','Gomez','Phillips','Evans','Turner','Diaz','Parker','Cruz',
 'Edwards','Collins','Reyes','Stewart','Morris','Morales','Murphy','Cook','Rogers','Gutierrez','Ortiz',
 'Morgan','Cooper','Peterson','Bailey','Reed','Kelly','Howard','Ramos','Kim','Cox','Ward','Richardson',
 'Watson','Brooks','Chavez','Wood','James','Bennett','Gray','Mendoza','Ruiz','Hughes','Price','Alvarez',
 'Castillo','Sanders','Patel','Myers','Long','Ross','Foster','Jimenez','Powell','Jenkins','Perry','Russell',
 'Sullivan','Bell','Coleman','Butler','Henderson','Barnes','Gonzales','Fisher','Vasquez','Simmons','Romero',
 'Jordan','Patterson','Alexander','Hamilton','Graham','Reynolds','Griffin','Wallace','Moreno','West','Cole',
 'Hayes','Bryant','Herrera','Gibson','Ellis','Tran','Medina','Aguilar','Stevens','Murray','Ford','Castro',
 'Marshall','Owens','Harrison','Fernandez','McDonald','Woods','Washington','Kennedy','Wells','Vargas',
 'Henry','Chen','Freeman','Webb','Tucker','Guzman','Burns','Crawford','Olson','Simpson','Porter','Hunter',
 'Gordon','Mendez','Silva','Shaw','Snyder','Mason','Dixon','Munoz','Hunt','Hicks','Holmes','Palmer',
 'Wagner','Black','Robertson','Boyd','Rose','Stone','Salazar','Fox','Warren','Mills','Meyer','Rice',
 'Schmidt','Garza','Daniels','Ferguson','Nichols','Stephens','Soto','Weaver','Ryan','Gardner','Payne',
 'Grant','Dunn','Kelley','Spencer','Hawkins','Arnold','Pierce','Vazquez','Hansen','Peters','Santos',
 'Hart','Bradley','Knight','Elliott','Cunningham','Duncan','Armstrong','Hudson','Carroll','Lane','Riley',
 'Andrews','Alvarado','Ray','Delgado','Berry','Perkins','Hoffman','Johnston','Matthews','Pena','Richards',
 'Contreras','Willis','Carpenter','Lawrence','Sandoval'] $$;
CREATE OR REPLACE FUNCTION cities() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[
 'New York','Los Angeles','Chicago','Houston','Phoenix','Philadelphia','San Antonio','San Diego','Dallas',
 'Austin','Jacksonville','Columbus','Charlotte','Indianapolis','Seattle','Denver','Boston','Nashville',
 'Portland','Las Vegas','Detroit','Memphis','Louisville','Baltimore','Milwaukee','Albuquerque','Tucson',
 'Fresno','Sacramento','Atlanta','Miami','Omaha','Raleigh','Minneapolis','Tulsa','Cleveland','Wichita',
 'Arlington','Tampa','New Orleans','London','Manchester','Birmingham','Leeds','Glasgow','Paris','Lyon',
 'Marseille','Toulouse','Berlin','Hamburg','Munich','Cologne','Frankfurt','Madrid','Barcelona','Valencia',
 'Seville','Rome','Milan','Naples','Turin','Amsterdam','Rotterdam','Utrecht','Brussels','Antwerp','Vienna',
 'Zurich','Geneva','Stockholm','Oslo','Copenhagen','Helsinki','Dublin','Lisbon','Porto','Warsaw','Krakow',
 'Prague','Budapest','Athens'] $$;
CREATE OR REPLACE FUNCTION street_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[
 'Main','Oak','Pine','Maple','Cedar','Elm','Washington','Lake','Hill','Park','Sunset','Highland','River',
 'Church','Spring','Mill','Forest','Meadow','Ridge','Valley','Lincoln','Jefferson','Madison','Franklin',
 'Jackson','Adams','Walnut','Chestnut','Willow','Birch','Cherry','Center','North','South','High','School',
 'Station','Market','Bridge','Victoria','King','Queen','Albert','George','Mount','Green','Garden','Orchard'
 ] $$;
CREATE OR REPLACE FUNCTION words() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[
 'please','deliver','to','the','back','door','leave','with','neighbour','gift','wrap','call','before',
 'arrival','fragile','handle','care','no','plastic','bag','thanks','ring','bell','twice','office','hours',
 'only','after','weekend','box','damaged','last','time','replace','item','size','color','blue','red',
 'black','white','large','small','medium','express','shipping','urgent','birthday','present','for','my',
 'mother','father','son','daughter','friend','colleague','do','not','bend','signature','required',
 'return','label','invoice','in','package','discount','code','applied','missing','part','previous','order'
 ] $$;
"""

USERS_INSERT = """
INSERT INTO users
SELECT g, fn, ln,
       lower(fn) || '.' || lower(ln) || (g %% 997)::text || '@'
           || pick(ARRAY['gmail.com','yahoo.com','outlook.com','hotmail.com','icloud.com','proton.me',
                         'gmx.de','web.de','orange.fr','example.org'], r4),
       '$2b$12$' || translate(substr(encode(sha256((g::text || random()::text)::bytea), 'base64'), 1, 43)
           || substr(encode(sha256(random()::text::bytea), 'base64'), 1, 10), '+', '.'),
       CASE WHEN r5 < 0.85 THEN '+' || (1 + floor(r5 * 60))::int::text || ' '
           || lpad(floor(random() * 1000)::int::text, 3, '0') || ' '
           || lpad(floor(random() * 10000000)::int::text, 7, '0') END,
       (1 + floor(r6 * 9999))::int::text || ' ' || pick(street_names(), r7) || ' '
           || pick(ARRAY['Street','Avenue','Road','Lane','Drive','Way','Court','Place'], r8),
       pick(cities(), r9),
       lpad(floor(random() * 100000)::int::text, 5, '0'),
       pick(ARRAY['US','US','US','GB','DE','FR','ES','IT','NL','BE','AT','CH','SE','PL','PT','IE'], r10),
       date '1945-01-01' + floor(random() * 22000)::int,
       created,
       CASE WHEN r11 < 0.9 THEN created + random() * (timestamptz '2025-06-01' - created) END,
       r11 < 0.93,
       (ARRAY['vip','newsletter','b2b','churn-risk','mobile','early-adopter','wholesale','student'])
           [1:floor(r12 * 4)::int],
       jsonb_build_object(
           'newsletter', r12 < 0.4,
           'language', pick(ARRAY['en','en','en','de','fr','es','it','nl','pl','pt'], r13),
           'theme', pick(ARRAY['light','dark','system'], r14),
           'notifications', jsonb_build_object('email', r13 < 0.7, 'sms', r14 < 0.2, 'push', r12 < 0.5),
           'currency', pick(ARRAY['USD','EUR','GBP'], r10))
  FROM (SELECT g, pick(first_names(), random()) AS fn, pick(last_names(), random()) AS ln,
               random() AS r4, random() AS r5, random() AS r6, random() AS r7, random() AS r8,
               random() AS r9, random() AS r10, random() AS r11, random() AS r12, random() AS r13,
               random() AS r14,
               timestamptz '2016-01-01' + random() * interval '3300 days' AS created
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) g) s
"""

ORDERS_INSERT = """
INSERT INTO orders
SELECT g, 1 + floor(r1 * %(users)s)::bigint,
       CASE WHEN r2 < 0.62 THEN 'delivered' WHEN r2 < 0.75 THEN 'shipped' WHEN r2 < 0.83 THEN 'pending'
            WHEN r2 < 0.89 THEN 'processing' WHEN r2 < 0.96 THEN 'cancelled' ELSE 'refunded' END,
       round((exp(random() * 6.5) + 1.0)::numeric, 2),
       pick(ARRAY['USD','USD','EUR','EUR','GBP','CHF','SEK','PLN'], r3),
       1 + floor(random() * random() * 12)::int,
       pick(ARRAY['card','card','card','paypal','paypal','apple_pay','google_pay','bank_transfer','klarna'], r4),
       'pi_' || substr(md5(g::text || r4::text), 1, 24),
       CASE WHEN r5 < 0.12 THEN upper(substr(md5(g::text), 1, 4)) || (10 * (1 + floor(r5 * 50)))::int END,
       created,
       created + random() * interval '20 days',
       (1 + floor(random() * 9999))::int::text || ' ' || pick(street_names(), random()) || ' '
           || pick(ARRAY['Street','Avenue','Road','Lane','Drive','Way'], random()) || ', '
           || lpad(floor(random() * 100000)::int::text, 5, '0') || ' ' || pick(cities(), random()),
       CASE WHEN r6 < 0.25 THEN array_to_string(ARRAY(
                SELECT pick(words(), random()) FROM generate_series(1, 3 + (g %% 11)::int)), ' ') END
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
               random() AS r6, timestamptz '2018-01-01' + random() * interval '2700 days' AS created
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) g) s
"""

EVENTS_INSERT = """
INSERT INTO events
SELECT g, 1 + floor(r1 * %(users)s)::bigint, kind,
       timestamptz '2023-01-01' + random() * interval '900 days',
       gen_random_uuid(),
       ('10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.'
           || floor(random() * 256)::int)::inet,
       pick(ARRAY[
           'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
           'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
           'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
           'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36',
           'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
           'shop-app/4.12.1 (Android 13)', 'shop-app/4.12.0 (iOS 17.3)'], r2),
       CASE kind
         WHEN 'page_view' THEN jsonb_build_object(
             'path', '/products/' || floor(random() * 50000)::int,
             'referrer', pick(ARRAY['google','direct','newsletter','facebook','instagram','bing'], r3),
             'duration_ms', floor(random() * 120000)::int)
         WHEN 'search' THEN jsonb_build_object(
             'query', pick(words(), random()) || ' ' || pick(words(), random()),
             'results', floor(random() * 500)::int, 'page', 1 + floor(random() * 3)::int)
         WHEN 'add_to_cart' THEN jsonb_build_object(
             'product_id', floor(random() * 50000)::int, 'quantity', 1 + floor(random() * 3)::int,
             'price', round((exp(random() * 5.0) + 1.0)::numeric, 2))
         WHEN 'purchase' THEN jsonb_build_object(
             'order_id', floor(random() * %(orders)s)::bigint,
             'total', round((exp(random() * 6.0) + 1.0)::numeric, 2),
             'items', jsonb_build_array(floor(random() * 50000)::int, floor(random() * 50000)::int))
         ELSE jsonb_build_object('method', pick(ARRAY['password','google','apple','magic_link'], r3),
                                 'success', r3 < 0.95,
                                 'token_hash', md5(g::text || r3::text))
       END
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3,
               pick(ARRAY['page_view','page_view','page_view','search','add_to_cart','purchase','login'],
                    random()) AS kind
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) g) s
"""

INDEXES = """
CREATE INDEX users_email ON users (email);
CREATE INDEX orders_user ON orders (user_id);
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX events_user_time ON events (user_id, occurred_at);
"""

TABLES = ("users", "orders", "events")
SEEDS = {"users": 0.1, "orders": 0.3, "events": 0.5}


@dataclass
class Dataset:
    """The running benchmark server and what was generated into it."""

    cluster: Any  # pgwarden.engine.cluster.LocalCluster
    database: str
    scale: float
    rows: dict[str, int]
    database_bytes: int
    table_bytes: dict[str, int]
    generate_seconds: float
    facts: dict[str, Any] = field(default_factory=dict)  # filled by scenarios (e.g. the gzip ratio)

    def target(self):
        return self.cluster.target(self.database)

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "scale": self.scale,
            "rows": self.rows,
            "database_bytes": self.database_bytes,
            "database_mib": round(self.database_bytes / 2**20, 1),
            "table_bytes_with_indexes": self.table_bytes,
            "generate_seconds": round(self.generate_seconds, 1),
            "server_settings": SERVER_SETTINGS,
            **self.facts,
        }


def _batches(total: int) -> list[tuple[int, int]]:
    return [(first, min(first + BATCH_ROWS - 1, total)) for first in range(1, total + 1, BATCH_ROWS)]


def generate(ctx: Context, cluster: Any, scale: float = 1.0) -> Dataset:
    """Create ``DATABASE`` on ``cluster`` and fill it; VACUUM FREEZE and CHECKPOINT at the end."""
    from pgwarden.engine.postgres import connect

    started = time.monotonic()
    rows = {"users": int(USERS_PER_SCALE * scale), "orders": int(ORDERS_PER_SCALE * scale),
            "events": int(EVENTS_PER_SCALE * scale)}
    with connect(cluster.target("postgres")) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")  # a constant, not input
    with connect(cluster.target(DATABASE)) as conn:
        conn.execute(SCHEMA)
        conn.execute(VOCABULARY)
        for table, statement in (("users", USERS_INSERT), ("orders", ORDERS_INSERT), ("events", EVENTS_INSERT)):
            batches = _batches(rows[table])
            for n, (first, last) in enumerate(batches, 1):
                # One fixed seed per batch: the same scale always yields the same rows.
                conn.execute("SELECT setseed(%s)", (SEEDS[table] + n / 10_000,))
                conn.execute(statement, {"first": first, "last": last, "users": rows["users"],
                                         "orders": rows["orders"]})
                ctx.log(f"generate {table}: {last:,}/{rows[table]:,} rows "
                        f"({time.monotonic() - started:.0f} s)")
        ctx.log("generate: indexes")
        conn.execute(INDEXES)
        ctx.log(f"generate: VACUUM (FREEZE, ANALYZE) ({time.monotonic() - started:.0f} s)")
        # Frozen, all-visible pages: later reads (pg_dump, row counts) set no hint bits and write
        # nothing, so every backup of the run sees the same bytes.
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
        database_bytes = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        table_bytes = {t: int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (t,)).fetchone()[0])
                       for t in TABLES}
    seconds = time.monotonic() - started
    ctx.log(f"generate: done, {database_bytes / 2**20:.0f} MiB in {seconds:.0f} s")
    return Dataset(cluster=cluster, database=DATABASE, scale=scale, rows=rows, database_bytes=database_bytes,
                   table_bytes=table_bytes, generate_seconds=seconds)


_shared: Dataset | None = None
_stack = ExitStack()
atexit.register(_stack.close)


def shared_dataset(ctx: Context, scale: float | None = None) -> Dataset:
    """The run's benchmark server with the generated database; built on first use, then reused.

    ``scale`` defaults to ``PGWARDEN_BENCH_SCALE`` (for quick trial runs), else 1.0 (about 1 GB).
    """
    global _shared
    scale = float(os.environ.get("PGWARDEN_BENCH_SCALE", "1.0")) if scale is None else scale
    if _shared is not None:
        if _shared.scale != scale:
            raise BenchmarkError(f"the shared dataset was built at scale {_shared.scale}, not {scale}")
        ctx.log(f"reusing the benchmark server on port {_shared.cluster.port} "
                f"({_shared.database_bytes / 2**20:.0f} MiB database {_shared.database})")
        return _shared
    cluster = _stack.enter_context(ctx.postgres(SERVER_SETTINGS))
    ctx.log(f"benchmark server on port {cluster.port}, data in {cluster.datadir}")
    _shared = generate(ctx, cluster, scale)
    return _shared
