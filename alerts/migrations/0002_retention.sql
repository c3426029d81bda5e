-- Retention (alerts.retention): resolved alerts are found by state and last change,
-- ended silences by their end.
CREATE INDEX alerts_resolved ON alerts (state, updated_ms);
CREATE INDEX audit_alert_id ON audit (alert_id);
CREATE INDEX silences_ends ON silences (ends_ms);
