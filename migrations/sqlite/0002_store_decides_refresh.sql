-- The store decides every refresh: a session's row says whether it is revoked, and a refresh is
-- refused unless the row is live and names the refresh token presented.
ALTER TABLE sessions ADD COLUMN revoked_at INTEGER;
UPDATE sessions SET revoked_at = CAST(unixepoch() AS INTEGER)
    WHERE sid IN (SELECT key FROM revocations WHERE kind = 'session');
-- Rotated refresh tokens were revoked one by one; the session's `refresh_jti` covers them now.
DELETE FROM revocations WHERE kind = 'token';
