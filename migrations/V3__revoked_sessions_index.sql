-- Every instance polls recently revoked sessions (its in-process revocation list); this keeps
-- the poll an index range scan however many sessions exist.
CREATE INDEX auth_sessions_revoked_at ON auth_sessions (revoked_at) WHERE revoked_at IS NOT NULL;
