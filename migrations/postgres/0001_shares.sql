-- The share store (src/store/postgres.rs): the same tables as the SQLite store (src/store.rs).
-- Applied once, in one transaction, recorded in zenml_authz_migrations.
CREATE TABLE shares (
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team')),
    grantee_id   TEXT NOT NULL,
    actions      TEXT NOT NULL,
    shared_by    TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, resource, grantee_kind, grantee_id)
);
CREATE TABLE share_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    kind         TEXT NOT NULL CHECK (kind IN ('set', 'purge')),
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT,
    grantee_id   TEXT,
    actions      TEXT,
    shared_by    TEXT,
    reason       TEXT
);
CREATE TABLE memberships (
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team')),
    grantee_id   TEXT NOT NULL,
    place_kind   TEXT NOT NULL CHECK (place_kind IN ('organization', 'workspace', 'project')),
    place_id     TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (grantee_kind, grantee_id, place_kind, place_id)
);
