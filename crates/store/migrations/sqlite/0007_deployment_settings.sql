-- Gantry schema, version 7: deployment-wide settings, written once by the first
-- instance to start and read by every other (e.g. `secret_key_check`, the value that
-- proves an instance holds the key this database's secrets are encrypted with).

CREATE TABLE deployment_settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
