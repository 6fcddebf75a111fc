-- The cloud's schema as main made it before cloud/store was a package: store version 1
-- (no PRAGMA user_version; cloud_meta.schema_version = 3). Frozen: migration tests
-- build an old store from it.
CREATE TABLE IF NOT EXISTS devicegroups (
    id TEXT PRIMARY KEY, product_id TEXT NOT NULL REFERENCES products(id),
    owner_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', region TEXT, env_vars TEXT,
    production_target TEXT REFERENCES devicegroups(id),
    dut_target TEXT REFERENCES devicegroups(id),
    load_code_after_blessing INTEGER NOT NULL DEFAULT 1,
    current_deployment TEXT, min_supported_deployment TEXT, min_impos_version TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (product_id, name));
CREATE TABLE IF NOT EXISTS cloud_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
    id TEXT PRIMARY KEY, plan_id TEXT NOT NULL UNIQUE, unbond_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', min_impos_version TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (owner_id, name));
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,
    group_id TEXT NOT NULL REFERENCES devicegroups(id), product_id TEXT NOT NULL,
    owner_id TEXT NOT NULL, sha TEXT NOT NULL, device_code TEXT NOT NULL,
    agent_code TEXT NOT NULL, device_sha TEXT NOT NULL, agent_sha TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', origin TEXT, tags TEXT NOT NULL DEFAULT '[]',
    flagged INTEGER NOT NULL DEFAULT 0, promoted INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL);
CREATE INDEX IF NOT EXISTS deployments_group ON deployments(group_id, seq);
CREATE INDEX IF NOT EXISTS deployments_device_sha ON deployments(device_sha);
CREATE INDEX IF NOT EXISTS deployments_agent_sha ON deployments(agent_sha);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, mac TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
    owner_id TEXT, group_id TEXT REFERENCES devicegroups(id), product_id TEXT,
    imp_type TEXT NOT NULL DEFAULT '', blessed INTEGER NOT NULL DEFAULT 0,
    activated INTEGER NOT NULL DEFAULT 0, online INTEGER NOT NULL DEFAULT 0,
    impos_version TEXT NOT NULL DEFAULT '', deployment_id TEXT, plan_id TEXT,
    agent_id TEXT, fixture_id TEXT, factory_group_id TEXT,
    led TEXT NOT NULL DEFAULT '', connection TEXT NOT NULL DEFAULT '',
    bless_failures INTEGER NOT NULL DEFAULT 0, last_enrolled_at REAL, blessed_at REAL,
    last_seen REAL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS devices_group ON devices(group_id);
CREATE INDEX IF NOT EXISTS devices_owner ON devices(owner_id, created_at, id);
CREATE INDEX IF NOT EXISTS devices_mac ON devices(mac);
CREATE INDEX IF NOT EXISTS devices_agent ON devices(agent_id);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, plan_id TEXT NOT NULL,
    owner_id TEXT NOT NULL, fixture_id TEXT, expires_at REAL, used_at REAL,
    used_by TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ts REAL NOT NULL,
    type TEXT NOT NULL, msg TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_device ON logs(device_id, id);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES devicegroups(id),
    event TEXT NOT NULL, url TEXT NOT NULL, content_type TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, webhook_id TEXT NOT NULL, event TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, delivered_at REAL,
    last_error TEXT, created_at REAL NOT NULL, abandoned_at REAL);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox(delivered_at, id);
CREATE TABLE IF NOT EXISTS agent_store (
    agent_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS device_links (
    device_id TEXT PRIMARY KEY, link_key TEXT NOT NULL, session TEXT,
    registered_at REAL NOT NULL, registrations INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS impos_releases (
    version TEXT PRIMARY KEY, sha TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    data BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_accounts (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE,
    pw_salt BLOB NOT NULL, pw_hash BLOB NOT NULL, role TEXT NOT NULL,
    owner_id TEXT NOT NULL, unbond_key TEXT NOT NULL, plan_id TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, account_id TEXT NOT NULL,
    expires_at REAL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_login_keys (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, digest TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_webhook_retry (
    delivery_id INTEGER PRIMARY KEY, next_at REAL NOT NULL, dead INTEGER NOT NULL DEFAULT 0);
