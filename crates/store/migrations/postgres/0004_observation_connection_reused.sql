-- Whether a check's final response came over a reused connection
-- (worker.reuse_idle). Rows stored before the column existed had none.
ALTER TABLE observations ADD COLUMN connection_reused BOOLEAN NOT NULL DEFAULT FALSE;
