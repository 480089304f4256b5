-- Capacity counts in order: every recount of a mitra's open sessions first bumps this number
-- under the row lock, then counts. A count with a higher number saw every transition a lower
-- one saw, so the mirror keeps the count with the highest number however the writes race.
ALTER TABLE mitra_online_status ADD COLUMN capacity_seq bigint NOT NULL DEFAULT 0;
