-- Every operator settings change, one row per key that changed: who, old -> new, when
-- (`GET /internal/config/history`). Written in the same transaction as the change.
CREATE TABLE app_config_history (
    id         bigserial PRIMARY KEY,
    key        text NOT NULL,
    old_value  jsonb NOT NULL,
    new_value  jsonb NOT NULL,
    changed_by uuid,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_config_history_newest ON app_config_history (id DESC);
