//! The durable alert store: alerts, the audit trail, deliveries and silences, in
//! SQLite (the embedded default) or PostgreSQL (several instances), through sqlx's
//! `Any` driver with one schema (`alerts/migrations/`) and one set of queries.
//!
//! Every change is a conditional update: a transition names the state (and
//! escalation level and due time) it expects, and only one of several instances
//! sharing a database wins it. A notification is claimed by inserting its delivery
//! row, whose primary key (alert, event, level, receiver) is the idempotency key:
//! an instance that loses the insert does not notify.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use ecg_types::{AlertKind, AlertState, Condition, FindingSource, Priority, Strip};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Arguments as _, Row as _};

use crate::config::Plan;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("alert store: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("alert store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not parse.
    #[error("alert store: bad stored value in {column}: {message}")]
    Corrupt {
        /// Column.
        column: &'static str,
        /// Parser's message.
        message: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// A clinician's verdict on an alert: the feedback that measures a rule's or a
/// model's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A true alarm.
    Confirmed,
    /// A false alarm.
    FalseAlarm,
    /// Could not tell.
    NotSure,
}

impl Verdict {
    /// The name used in JSON, metric labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalseAlarm => "false_alarm",
            Verdict::NotSure => "not_sure",
        }
    }
}

/// One alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// Stable id (stream/condition/origin/first window start).
    pub id: String,
    /// Pseudonymous patient.
    pub patient: String,
    /// Stream.
    pub stream: String,
    /// Condition.
    pub condition: Condition,
    /// Priority.
    pub priority: Priority,
    /// Kind.
    pub kind: AlertKind,
    /// State.
    pub state: AlertState,
    /// Owning care team.
    pub team: String,
    /// Care unit.
    pub unit: Option<String>,
    /// Teams that see it (the owner and the teams it was escalated to).
    pub visible_to: Vec<String>,
    /// The rule that raised it (`condition/dsp` or `condition/ai`).
    pub rule: String,
    /// `id@version` of the model behind it, if any.
    pub model: Option<String>,
    /// Detector or model.
    pub source: FindingSource,
    /// One line for people.
    pub summary: String,
    /// Model score.
    pub score: Option<f64>,
    /// Measured value.
    pub value: Option<f64>,
    /// From an AI model: decision support.
    pub decision_support: bool,
    /// Device time of the first window.
    pub since_us: i64,
    /// When it fired (ms since the epoch).
    pub fired_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// First notification.
    pub notified_ms: Option<i64>,
    /// Acknowledgement time.
    pub acked_ms: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// The clinician's verdict.
    pub verdict: Option<Verdict>,
    /// Escalation level (0: first notification's receivers).
    pub level: i64,
    /// When the next notification, escalation or repeat is due.
    pub due_ms: Option<i64>,
    /// Matched a silence when it fired: recorded, not notified.
    pub silenced: bool,
    /// Routing decision.
    pub plan: Plan,
    /// The ECG behind it.
    pub strip: Option<Strip>,
}

/// One audit entry: who did what to an alert, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Time, µs since the epoch.
    pub at_us: i64,
    /// Who: `engine`, `escalation`, or the token's actor.
    pub actor: String,
    /// What: fired, notified, acknowledged, escalated, resolved, repeat, silenced, …
    pub action: String,
    /// State before.
    pub from: Option<String>,
    /// State after.
    pub to: Option<String>,
    /// Verdict given with it.
    pub verdict: Option<Verdict>,
    /// Free text.
    pub note: Option<String>,
}

/// One notification to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// Receiver name.
    pub receiver: String,
    /// Receiver kind.
    pub kind: String,
    /// Event (fired, escalated, repeat, resolved, …).
    pub event: String,
    /// Escalation level.
    pub level: i64,
    /// Claimed at, ms.
    pub claimed_ms: i64,
    /// Finished at, ms.
    pub done_ms: Option<i64>,
    /// Outcome, once finished.
    pub ok: Option<bool>,
    /// Attempts made.
    pub attempts: i64,
    /// Last error.
    pub error: Option<String>,
}

/// A silence: alerts of `team` matching `matchers` fire without notifications
/// until `ends_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id.
    pub id: String,
    /// Team it applies within.
    pub team: String,
    /// What it matches.
    pub matchers: SilenceMatchers,
    /// Start, ms.
    pub starts_ms: i64,
    /// End, ms.
    pub ends_ms: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Matchers of a silence; every one given must equal the alert's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchers {
    /// Pseudonymous patient.
    #[serde(default)]
    pub patient: Option<String>,
    /// Stream.
    #[serde(default)]
    pub stream: Option<String>,
    /// Condition.
    #[serde(default)]
    pub condition: Option<Condition>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<Priority>,
}

impl SilenceMatchers {
    /// True when every matcher given equals the alert's.
    pub fn matches(&self, a: &AlertRecord) -> bool {
        self.patient.as_deref().is_none_or(|p| p == a.patient)
            && self.stream.as_deref().is_none_or(|s| s == a.stream)
            && self.condition.is_none_or(|c| c == a.condition)
            && self.priority.is_none_or(|p| p == a.priority)
    }

    /// True when nothing is matched on (a silence of everything).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Verdict counts of one rule and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrecisionRow {
    /// Rule.
    pub rule: String,
    /// Model `id@version`, if the rule's alerts come from a model.
    pub model: Option<String>,
    /// Confirmed alerts.
    pub confirmed: i64,
    /// False alarms.
    pub false_alarm: i64,
    /// Not sure.
    pub not_sure: i64,
    /// confirmed / (confirmed + false alarm), if any of either.
    pub precision: Option<f64>,
}

/// The idempotency key of one notification: alert, event, escalation level, receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    /// Alert id.
    pub alert: &'a str,
    /// Event (`fired`, `escalated`, `repeat-…`, `acknowledged`, `resolved`).
    pub event: &'a str,
    /// Escalation level.
    pub level: i64,
    /// Receiver name.
    pub receiver: &'a str,
}

/// A conditional change of one alert.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// Only from these states (any if empty).
    pub from: &'a [AlertState],
    /// Only if the level is this.
    pub expect_level: Option<i64>,
    /// Only if the due time is this (`Some(None)`: only if nothing is due).
    pub expect_due: Option<Option<i64>>,
    /// New state.
    pub state: Option<AlertState>,
    /// New level.
    pub level: Option<i64>,
    /// New due time.
    pub due: Option<Option<i64>>,
    /// Set the first-notification time if unset.
    pub notified: bool,
    /// Acknowledged by.
    pub acked_by: Option<&'a str>,
    /// Verdict.
    pub verdict: Option<Verdict>,
    /// Another team that now sees it.
    pub add_team: Option<&'a str>,
    /// Audit: actor.
    pub actor: &'a str,
    /// Audit: action.
    pub action: &'a str,
    /// Audit: note.
    pub note: Option<&'a str>,
}

/// Milliseconds since the epoch.
pub fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Audit time in µs, strictly increasing within this process, so that entries
/// written in one instant keep their order.
fn audit_us(t: SystemTime) -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let prev = LAST
        .fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |last| Some(now.max(last + 1)),
        )
        .unwrap_or(now);
    now.max(prev + 1)
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
}

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "alerts, audit, deliveries, silences",
    include_str!("../migrations/0001_alerts.sql"),
)];

const ALERT_COLUMNS: &str = "id, patient, stream, condition, priority, kind, state, team, unit, \
    visible_to, rule, model, source, summary, score, value, decision_support, since_us, fired_ms, \
    updated_ms, notified_ms, acked_ms, acked_by, verdict, level, due_ms, silenced, plan, strip";

/// Positional arguments with `$N` placeholders, which both SQLite and PostgreSQL take.
#[derive(Default)]
struct Args {
    args: AnyArguments<'static>,
    n: usize,
}

impl Args {
    fn bind<T>(&mut self, v: T) -> String
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        // Encoding into AnyArguments fails only for types Any does not carry.
        let _ = self.args.add(v);
        self.n += 1;
        format!("${}", self.n)
    }

    /// An optional float: `NULL` written into the statement rather than bound, since
    /// sqlx's `Any` driver binds a NULL `f64` as a NULL `f32`, and PostgreSQL then
    /// refuses the next non-NULL value through the same cached statement.
    fn bind_f64(&mut self, v: Option<f64>) -> String {
        match v {
            Some(x) => self.bind(x),
            None => "NULL".to_owned(),
        }
    }
}

fn parse_enum<T: DeserializeOwned>(column: &'static str, s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| {
        StoreError::Corrupt {
            column,
            message: e.to_string(),
        }
    })
}

fn parse_json<T: DeserializeOwned>(column: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Store {
    /// Connects and migrates. `sqlite://PATH` creates the file if missing;
    /// `sqlite::memory:` is one private in-memory database.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let memory = url.contains(":memory:");
        let url: Cow<'_, str> = if url.starts_with("sqlite:") && !memory && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc").into()
        } else {
            url.into()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if memory { 1 } else { max_connections.max(1) })
            .min_connections(usize::from(memory) as u32)
            .idle_timeout(if memory {
                None
            } else {
                Some(std::time::Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(std::time::Duration::from_secs(1800))
            })
            .connect(&url)
            .await?;
        if !postgres && !memory {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(v, d, sql)| {
                        Migration::new(*v, (*d).into(), MigrationType::Simple, (*sql).into(), false)
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await?;
        Ok(Self { pool, postgres })
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so that a read-then-write transaction waits for another writer
    /// (busy timeout) instead of failing to upgrade.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.postgres {
            self.pool.begin().await?
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        })
    }

    /// Creates database `name` on the PostgreSQL server of `admin_url` (whose role
    /// may create databases) and returns its URL: a first-time set-up, and a fresh
    /// database per test or benchmark.
    ///
    /// # Errors
    /// When the server refuses, or `name` is not a plain identifier.
    pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Corrupt {
                column: "database name",
                message: format!("{name:?} is not a plain lower-case identifier"),
            });
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Ok(format!("{base}/{name}"))
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Inserts a new alert with its `fired` audit entry (and `notified`, when it is
    /// inserted as notified: no group wait); false (and nothing written) if an alert
    /// with its id exists — a replayed finding or another instance.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert(&self, a: &AlertRecord, now: SystemTime) -> Result<bool> {
        let mut q = Args::default();
        let values = [
            q.bind(a.id.clone()),
            q.bind(a.patient.clone()),
            q.bind(a.stream.clone()),
            q.bind(a.condition.as_str().to_owned()),
            q.bind(a.priority.as_str().to_owned()),
            q.bind(a.kind.as_str().to_owned()),
            q.bind(a.state.as_str().to_owned()),
            q.bind(a.team.clone()),
            q.bind(a.unit.clone()),
            q.bind(visible(&a.visible_to)),
            q.bind(a.rule.clone()),
            q.bind(a.model.clone()),
            q.bind(to_json(&a.source)),
            q.bind(a.summary.clone()),
            q.bind_f64(a.score),
            q.bind_f64(a.value),
            q.bind(i64::from(a.decision_support)),
            q.bind(a.since_us),
            q.bind(a.fired_ms),
            q.bind(a.updated_ms),
            q.bind(a.notified_ms),
            q.bind(a.acked_ms),
            q.bind(a.acked_by.clone()),
            q.bind(a.verdict.map(|v| v.as_str().to_owned())),
            q.bind(a.level),
            q.bind(a.due_ms),
            q.bind(i64::from(a.silenced)),
            q.bind(to_json(&a.plan)),
            q.bind(a.strip.as_ref().map(to_json)),
        ]
        .join(", ");
        let sql = format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ({values}) ON CONFLICT (id) DO NOTHING"
        );
        let mut tx = self.begin().await?;
        let inserted = sqlx::query_with(&sql, q.args)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if inserted {
            let action = if a.silenced { "silenced" } else { "fired" };
            let first = if a.state == AlertState::Notified {
                AlertState::Firing
            } else {
                a.state
            };
            audit(
                &mut tx,
                &a.id,
                now,
                "engine",
                action,
                None,
                Some(first),
                None,
                None,
            )
            .await?;
            if a.state == AlertState::Notified {
                // Notified in the same transaction (no group wait): both entries.
                audit(
                    &mut tx,
                    &a.id,
                    now,
                    "engine",
                    "notified",
                    Some(AlertState::Firing),
                    Some(AlertState::Notified),
                    None,
                    None,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Applies a conditional change; returns the alert after it, or `None` when the
    /// alert does not exist or is not as expected (another instance or person was first).
    ///
    /// # Errors
    /// Database errors.
    pub async fn change(
        &self,
        id: &str,
        c: &Change<'_>,
        now: SystemTime,
    ) -> Result<Option<AlertRecord>> {
        let mut tx = self.begin().await?;
        let Some(before) = fetch(&mut tx, id).await? else {
            return Ok(None);
        };
        if (!c.from.is_empty() && !c.from.contains(&before.state))
            || c.expect_level.is_some_and(|l| l != before.level)
            || c.expect_due.is_some_and(|d| d != before.due_ms)
        {
            return Ok(None);
        }
        let mut q = Args::default();
        let mut sets = vec![format!("updated_ms = {}", q.bind(ms(now)))];
        if let Some(s) = c.state {
            sets.push(format!("state = {}", q.bind(s.as_str().to_owned())));
        }
        if let Some(l) = c.level {
            sets.push(format!("level = {}", q.bind(l)));
        }
        if let Some(d) = c.due {
            sets.push(format!("due_ms = {}", q.bind(d)));
        }
        if c.notified && before.notified_ms.is_none() {
            sets.push(format!("notified_ms = {}", q.bind(ms(now))));
        }
        if let Some(by) = c.acked_by {
            sets.push(format!("acked_by = {}", q.bind(by.to_owned())));
            sets.push(format!("acked_ms = {}", q.bind(ms(now))));
        }
        if let Some(v) = c.verdict {
            sets.push(format!("verdict = {}", q.bind(v.as_str().to_owned())));
        }
        if let Some(t) = c.add_team {
            if !before.visible_to.iter().any(|v| v == t) {
                let mut teams = before.visible_to.clone();
                teams.push(t.to_owned());
                sets.push(format!("visible_to = {}", q.bind(visible(&teams))));
            }
        }
        // Optimistic: the row must still be what was read.
        let guard_updated = q.bind(before.updated_ms);
        let guard_state = q.bind(before.state.as_str().to_owned());
        let guard_level = q.bind(before.level);
        let guard_due = q.bind(before.due_ms.unwrap_or(-1));
        let guard_id = q.bind(id.to_owned());
        let sql = format!(
            "UPDATE alerts SET {} WHERE id = {guard_id} AND state = {guard_state} AND level = {guard_level} AND updated_ms = {guard_updated} AND COALESCE(due_ms, -1) = {guard_due}",
            sets.join(", ")
        );
        if sqlx::query_with(&sql, q.args)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            != 1
        {
            return Ok(None);
        }
        audit(
            &mut tx,
            id,
            now,
            c.actor,
            c.action,
            Some(before.state),
            c.state.or(Some(before.state)),
            c.verdict,
            c.note,
        )
        .await?;
        let after = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Records an audit entry without a state change (e.g. a repeat notification).
    ///
    /// # Errors
    /// Database errors.
    pub async fn note(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        note: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        audit(&mut tx, id, now, actor, action, None, None, None, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One alert.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, id: &str) -> Result<Option<AlertRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, id).await
    }

    /// Alerts in the given states (all if empty), of `priority` (any if `None`), that
    /// `team` sees (all if `None`), highest priority first, then oldest; at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(
        &self,
        states: &[AlertState],
        priority: Option<Priority>,
        team: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>> {
        let mut q = Args::default();
        let mut wheres = Vec::new();
        if let Some(p) = priority {
            wheres.push(format!("priority = {}", q.bind(p.as_str().to_owned())));
        }
        if !states.is_empty() {
            let ps: Vec<String> = states
                .iter()
                .map(|s| q.bind(s.as_str().to_owned()))
                .collect();
            wheres.push(format!("state IN ({})", ps.join(", ")));
        }
        if let Some(t) = team {
            wheres.push(format!("visible_to LIKE {}", q.bind(format!("%,{t},%"))));
        }
        let w = if wheres.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wheres.join(" AND "))
        };
        let limit = q.bind(limit);
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {w} ORDER BY CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, fired_ms, id LIMIT {limit}"
        );
        let rows = sqlx::query_with(&sql, q.args).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    /// Open alerts whose next step is due at `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<AlertRecord>> {
        let mut q = Args::default();
        let now = q.bind(now_ms);
        let limit = q.bind(limit);
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE due_ms IS NOT NULL AND due_ms <= {now} ORDER BY due_ms LIMIT {limit}"
        );
        let rows = sqlx::query_with(&sql, q.args).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    /// The audit trail of an alert, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_us, actor, action, from_state, to_state, verdict, note FROM audit WHERE alert_id = $1 ORDER BY at_us, id",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_us: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    from: r.try_get(3)?,
                    to: r.try_get(4)?,
                    verdict: r
                        .try_get::<Option<String>, _>(5)?
                        .map(|v| parse_enum("audit.verdict", &v))
                        .transpose()?,
                    note: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Claims one notification; true if this instance is the one to send it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim(
        &self,
        key: &DeliveryKey<'_>,
        kind: &str,
        instance: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO deliveries (alert_id, event, level, receiver, kind, instance, claimed_ms, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT DO NOTHING",
        )
        .bind(key.alert.to_owned())
        .bind(key.event.to_owned())
        .bind(key.level)
        .bind(key.receiver.to_owned())
        .bind(kind.to_owned())
        .bind(instance.to_owned())
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records the outcome of a claimed notification.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivered(
        &self,
        key: &DeliveryKey<'_>,
        ok: bool,
        attempts: u32,
        error: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET done_ms = $1, ok = $2, attempts = $3, error = $4 WHERE alert_id = $5 AND event = $6 AND level = $7 AND receiver = $8",
        )
        .bind(ms(now))
        .bind(i64::from(ok))
        .bind(i64::from(attempts))
        .bind(error.map(str::to_owned))
        .bind(key.alert.to_owned())
        .bind(key.event.to_owned())
        .bind(key.level)
        .bind(key.receiver.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The notifications of an alert, in claim order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn deliveries(&self, id: &str) -> Result<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT receiver, kind, event, level, claimed_ms, done_ms, ok, attempts, error FROM deliveries WHERE alert_id = $1 ORDER BY claimed_ms, level, receiver",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    receiver: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    event: r.try_get(2)?,
                    level: r.try_get(3)?,
                    claimed_ms: r.try_get(4)?,
                    done_ms: r.try_get(5)?,
                    ok: r.try_get::<Option<i64>, _>(6)?.map(|v| v != 0),
                    attempts: r.try_get(7)?,
                    error: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Claimed notifications unfinished since before `claimed_before_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn stale_deliveries(
        &self,
        claimed_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, DeliveryRecord)>> {
        let rows = sqlx::query(
            "SELECT alert_id, receiver, kind, event, level, claimed_ms, attempts FROM deliveries WHERE done_ms IS NULL AND claimed_ms < $1 ORDER BY claimed_ms LIMIT $2",
        )
        .bind(claimed_before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    DeliveryRecord {
                        receiver: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        event: r.try_get(3)?,
                        level: r.try_get(4)?,
                        claimed_ms: r.try_get(5)?,
                        done_ms: None,
                        ok: None,
                        attempts: r.try_get(6)?,
                        error: None,
                    },
                ))
            })
            .collect()
    }

    /// Takes over a stale claim; true if this instance got it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn reclaim(
        &self,
        alert: &str,
        d: &DeliveryRecord,
        instance: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE deliveries SET claimed_ms = $1, instance = $2 WHERE alert_id = $3 AND event = $4 AND level = $5 AND receiver = $6 AND claimed_ms = $7 AND done_ms IS NULL",
        )
        .bind(ms(now))
        .bind(instance.to_owned())
        .bind(alert.to_owned())
        .bind(d.event.clone())
        .bind(d.level)
        .bind(d.receiver.clone())
        .bind(d.claimed_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds a silence.
    ///
    /// # Errors
    /// Database errors.
    pub async fn add_silence(&self, s: &Silence) -> Result<()> {
        sqlx::query(
            "INSERT INTO silences (id, team, matchers, starts_ms, ends_ms, created_by, comment) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.clone())
        .bind(s.team.clone())
        .bind(to_json(&s.matchers))
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(s.created_by.clone())
        .bind(s.comment.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences in force at `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>> {
        let rows = sqlx::query(
            "SELECT id, team, matchers, starts_ms, ends_ms, created_by, comment FROM silences WHERE starts_ms <= $1 AND ends_ms > $1 ORDER BY starts_ms",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    id: r.try_get(0)?,
                    team: r.try_get(1)?,
                    matchers: parse_json("silences.matchers", &r.try_get::<String, _>(2)?)?,
                    starts_ms: r.try_get(3)?,
                    ends_ms: r.try_get(4)?,
                    created_by: r.try_get(5)?,
                    comment: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Verdict counts per rule and model.
    ///
    /// # Errors
    /// Database errors.
    pub async fn precision(&self) -> Result<Vec<PrecisionRow>> {
        let rows = sqlx::query(
            "SELECT rule, model, verdict, COUNT(*) FROM alerts WHERE verdict IS NOT NULL GROUP BY rule, model, verdict ORDER BY rule, model",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<PrecisionRow> = Vec::new();
        for r in &rows {
            let rule: String = r.try_get(0)?;
            let model: Option<String> = r.try_get(1)?;
            let verdict: Verdict = parse_enum("alerts.verdict", &r.try_get::<String, _>(2)?)?;
            let n: i64 = r.try_get(3)?;
            let row = match out.iter_mut().find(|p| p.rule == rule && p.model == model) {
                Some(p) => p,
                None => {
                    out.push(PrecisionRow {
                        rule,
                        model,
                        confirmed: 0,
                        false_alarm: 0,
                        not_sure: 0,
                        precision: None,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match verdict {
                Verdict::Confirmed => row.confirmed += n,
                Verdict::FalseAlarm => row.false_alarm += n,
                Verdict::NotSure => row.not_sure += n,
            }
        }
        for p in &mut out {
            let judged = p.confirmed + p.false_alarm;
            p.precision = (judged > 0).then(|| p.confirmed as f64 / judged as f64);
        }
        Ok(out)
    }
}

fn visible(teams: &[String]) -> String {
    format!(",{},", teams.join(","))
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    now: SystemTime,
    actor: &str,
    action: &str,
    from: Option<AlertState>,
    to: Option<AlertState>,
    verdict: Option<Verdict>,
    note: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (id, alert_id, at_us, actor, action, from_state, to_state, verdict, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()))
    .bind(id.to_owned())
    .bind(audit_us(now))
    .bind(actor.to_owned())
    .bind(action.to_owned())
    .bind(from.map(|s| s.as_str().to_owned()))
    .bind(to.map(|s| s.as_str().to_owned()))
    .bind(verdict.map(|v| v.as_str().to_owned()))
    .bind(note.map(str::to_owned))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<AlertRecord>> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(record).transpose()
}

fn record(r: &AnyRow) -> Result<AlertRecord> {
    let s = |i: usize| -> Result<String> { Ok(r.try_get::<String, _>(i)?) };
    Ok(AlertRecord {
        id: s(0)?,
        patient: s(1)?,
        stream: s(2)?,
        condition: parse_enum("alerts.condition", &s(3)?)?,
        priority: parse_enum("alerts.priority", &s(4)?)?,
        kind: parse_enum("alerts.kind", &s(5)?)?,
        state: parse_enum("alerts.state", &s(6)?)?,
        team: s(7)?,
        unit: r.try_get(8)?,
        visible_to: s(9)?
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        rule: s(10)?,
        model: r.try_get(11)?,
        source: parse_json("alerts.source", &s(12)?)?,
        summary: s(13)?,
        score: r.try_get(14)?,
        value: r.try_get(15)?,
        decision_support: r.try_get::<i64, _>(16)? != 0,
        since_us: r.try_get(17)?,
        fired_ms: r.try_get(18)?,
        updated_ms: r.try_get(19)?,
        notified_ms: r.try_get(20)?,
        acked_ms: r.try_get(21)?,
        acked_by: r.try_get(22)?,
        verdict: r
            .try_get::<Option<String>, _>(23)?
            .map(|v| parse_enum("alerts.verdict", &v))
            .transpose()?,
        level: r.try_get(24)?,
        due_ms: r.try_get(25)?,
        silenced: r.try_get::<i64, _>(26)? != 0,
        plan: parse_json("alerts.plan", &s(27)?)?,
        strip: r
            .try_get::<Option<String>, _>(28)?
            .map(|v| parse_json("alerts.strip", &v))
            .transpose()?,
    })
}
