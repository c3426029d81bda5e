-- cardiostream alert store: one schema for SQLite and PostgreSQL (types both accept).
-- Times are milliseconds (audit: microseconds) since the Unix epoch.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    stream TEXT NOT NULL,
    condition TEXT NOT NULL,
    priority TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    team TEXT NOT NULL,
    unit TEXT,
    visible_to TEXT NOT NULL,
    rule TEXT NOT NULL,
    model TEXT,
    source TEXT NOT NULL,
    summary TEXT NOT NULL,
    score DOUBLE PRECISION,
    value DOUBLE PRECISION,
    decision_support BIGINT NOT NULL,
    since_us BIGINT NOT NULL,
    fired_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    notified_ms BIGINT,
    acked_ms BIGINT,
    acked_by TEXT,
    verdict TEXT,
    level BIGINT NOT NULL,
    due_ms BIGINT,
    silenced BIGINT NOT NULL,
    plan TEXT NOT NULL,
    strip TEXT
);
CREATE INDEX alerts_open ON alerts (state, fired_ms);
CREATE INDEX alerts_due ON alerts (due_ms);

-- Every transition: who, when, what.
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    verdict TEXT,
    note TEXT
);
CREATE INDEX audit_alert ON audit (alert_id, at_us);

-- One row per notification to one receiver: the primary key is the idempotency key
-- that keeps several instances from notifying twice.
CREATE TABLE deliveries (
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    level BIGINT NOT NULL,
    receiver TEXT NOT NULL,
    kind TEXT NOT NULL,
    instance TEXT NOT NULL,
    claimed_ms BIGINT NOT NULL,
    done_ms BIGINT,
    ok BIGINT,
    attempts BIGINT NOT NULL,
    error TEXT,
    PRIMARY KEY (alert_id, event, level, receiver)
);

CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    matchers TEXT NOT NULL,
    starts_ms BIGINT NOT NULL,
    ends_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL
);
