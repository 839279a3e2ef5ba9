-- PostgreSQL only (its usage counters move in key order per statement; see
-- migrations/postgres/0016_usage_update_order.sql). SQLite has one writer, so its
-- counter triggers cannot deadlock; the version exists so both backends share versions.
SELECT 1;
