-- Gantry schema, version 9: the leader lease. One row: which instance runs the
-- background loops (holder), until when (expires_at, database time, so instances'
-- clocks do not matter), and the epoch, one more at every change of holder. Every
-- write a leader's loop makes checks the epoch in its own transaction (fencing).

CREATE TABLE leader_lease (
    id         INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
    holder     TEXT        NOT NULL DEFAULT '',
    epoch      BIGINT      NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
INSERT INTO leader_lease (id) VALUES (1);
