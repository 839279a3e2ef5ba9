-- The lifecycle pass's read (`run_list_due`) by index: the active runs by the moment
-- they fall due, and the LOST nodes.
--
-- Why: the pass asks about once a second for the active runs past their start or run
-- limit, or on a LOST node. Computed from columns (migration 17) but not indexed, that
-- question visited every active run to answer, in a quiet pass, with none: at 10,000
-- runs, 9 ms of PostgreSQL's time a pass, mostly reading runs' wide rows (each holds
-- its job's snapshot). With these the pass reads the due runs only.
--
-- The expression is `RUN_DUE_AT` of src/sql/cluster.rs, character for character (a
-- test compares them): both databases use an expression index only for the
-- expression it was built on.
CREATE INDEX job_runs_due ON job_runs ((CASE WHEN start_limit_ms IS NULL THEN 0
     WHEN status = 'RUNNING' THEN (CASE WHEN run_limit_ms < 4000000000000000 THEN started_at_ms + run_limit_ms
     ELSE 9000000000000000000 END)
     WHEN start_limit_ms < 4000000000000000 THEN created_at_ms + start_limit_ms ELSE 9000000000000000000 END))
    WHERE status IN ('ASSIGNED', 'PREPARING', 'RUNNING');
-- Few nodes are LOST at any time; their runs are found through job_runs_node_status.
CREATE INDEX nodes_lost ON nodes (uuid) WHERE status = 'LOST';
