-- Runs record when their process started, so that a reused pid is not taken for the run's writer
-- (autointerp/store/process.py), and may end 'interrupted' (their process is gone: killed, or the
-- machine went down) besides 'complete' and 'failed'.

ALTER TABLE runs ADD COLUMN process_start VARCHAR;  -- '<boot id>/<start ticks>' on Linux, else NULL
