-- The refresh token a session had before its last rotation, and when that rotation was: a
-- browser's tabs refresh at once, and the ones that lose the race present the token just
-- rotated; within `tokens.refresh_reuse_interval` they get an access token rather than a revoked
-- session.
ALTER TABLE sessions ADD COLUMN previous_jti TEXT;
ALTER TABLE sessions ADD COLUMN rotated_at BIGINT;
