-- Gantry schema, version 9: the leader lease (see the PostgreSQL migration). SQLite
-- has one instance, which always leads, so nothing reads or writes this table; it is
-- here so both backends share versions and the schema stays the same shape.

CREATE TABLE leader_lease (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    holder TEXT    NOT NULL DEFAULT '',
    epoch  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO leader_lease (id) VALUES (1);
