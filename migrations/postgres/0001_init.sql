-- Users: `username_key` is the NFKC + case-folded form, so "Alice" and "alice" are one user.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Login sessions: the refresh token currently valid for each, for rotation and reuse detection.
CREATE TABLE sessions (
    sid         TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    refresh_jti TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Revoked sessions and tokens, kept until the last token they cover would have expired.
-- `updated_ms` (the database's clock) lets replicas catch up on what changed since they last looked.
CREATE TABLE revocations (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
CREATE INDEX revocations_updated_ms ON revocations (updated_ms);
