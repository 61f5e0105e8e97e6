-- The reports read the timeline by period.
CREATE INDEX timeline_by_time ON timeline (occurred_at);
