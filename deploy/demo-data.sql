-- Demo data for scripts/run.sh: three mitras and one customer with fixed ids, all logging in by
-- OTP (the dev code). Idempotent: loading it again changes nothing. The mitras' online-status
-- rows come from the mitras_online_status_row trigger. The operator is created by
-- `internal-api create-operator`, which hashes the password.
BEGIN;

INSERT INTO mitras (id, phone, display_name) VALUES
    ('00000000-0000-4000-8000-000000000001', '+620000000001', 'Demo Mitra Ayu'),
    ('00000000-0000-4000-8000-000000000002', '+620000000002', 'Demo Mitra Budi'),
    ('00000000-0000-4000-8000-000000000003', '+620000000003', 'Demo Mitra Citra')
ON CONFLICT DO NOTHING;

INSERT INTO customers (id, phone, display_name) VALUES
    ('00000000-0000-4000-8000-000000000100', '+620000000100', 'Demo Customer')
ON CONFLICT DO NOTHING;

COMMIT;
