-- Roles, sorted and comma-separated ('' is none); when a user was disabled (a disabled user
-- cannot log in or refresh); their last login; and when each session began, for
-- `authgate users list` and `authgate users sessions`. Existing users have no role.
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN last_login_at BIGINT;
ALTER TABLE sessions ADD COLUMN created_at BIGINT;
