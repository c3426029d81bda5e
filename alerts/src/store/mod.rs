//! The durable alert store: alerts, the audit trail, deliveries and silences, in
//! SQLite (the embedded default) or PostgreSQL (several instances), through sqlx's
//! `Any` driver with one schema (`alerts/migrations/`) and one set of queries.
//!
//! Every change is a conditional update: a transition names the state (and
//! escalation level and due time) it expects, and only one of several instances
//! sharing a database wins it. A notification is claimed by inserting its delivery
//! row, whose primary key (alert, event, level, receiver) is the idempotency key:
//! an instance that loses the insert does not notify.
//!
//! By what it does: `records` (what is stored), `intake` (new alerts),
//! `notify` (notification claims and outcomes), `escalation` (what is due),
//! `actions` (lists, audit trail, silences, precision), `burden` (AF burden
//! totals) and `retention` (pruning
//! what is older than the retention); transitions
//! ([`Store::change`]) are shared by all of them and live here.

mod actions;
mod burden;
mod escalation;
mod intake;
mod notify;
mod records;
mod retention;

pub use records::*;
pub use retention::Pruned;

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use ecg_types::AlertState;
use serde::{de::DeserializeOwned, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Arguments as _, Connection as _, Row as _};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no (in the message, so not also a `source` that a report
    /// of the error's chain would print again).
    #[error("alert store: {0}")]
    Db(sqlx::Error),
    /// Migrations failed (in the message, as above).
    #[error("alert store migration: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A stored value did not parse.
    #[error("alert store: bad stored value in {column}: {message}")]
    Corrupt {
        /// Column.
        column: &'static str,
        /// Parser's message.
        message: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}

type Result<T> = std::result::Result<T, StoreError>;

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

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "alerts, audit, deliveries, silences",
        include_str!("../../migrations/0001_alerts.sql"),
    ),
    (
        2,
        "retention indexes",
        include_str!("../../migrations/0002_retention.sql"),
    ),
    (
        3,
        "af burden",
        include_str!("../../migrations/0003_af_burden.sql"),
    ),
];

/// How often opening a SQLite store runs its migrations again after a failure (another
/// instance migrating the same new file at the same time), 50 ms × the attempt apart.
const SQLITE_MIGRATE_RETRIES: u32 = 5;

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
            // A transaction dropped on an error leaves its rollback queued on the
            // connection: run it, and keep the connection only if no transaction is
            // left open. On SQLITE_FULL SQLite rolls the transaction back itself, the
            // queued ROLLBACK then fails and sqlx's transaction depth stays at 1: put
            // back in the pool, that connection refused every later BEGIN and wedged
            // the service until restarted (docs/chaos.md). Closed, the pool opens a
            // fresh one. (The in-memory database lives in its one connection.)
            .after_release(move |conn, _meta| {
                Box::pin(async move {
                    if memory {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect(&url)
            .await?;
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
        // Instances that open one new SQLite file at the same moment all find its
        // migrations unapplied (sqlx locks migrations on PostgreSQL only), and all but
        // the first then fail on the tables it created ("table alerts already
        // exists"); switching the file to WAL can meet the same race ("database is
        // locked"). Each migration runs in its own transaction, so a failed one left
        // nothing behind: try again, and the migrator finds them applied. A fault that
        // is not such a race fails every attempt and is returned.
        let sqlite_file = !postgres && !memory;
        let prepare = || async {
            if sqlite_file {
                sqlx::query("PRAGMA journal_mode=WAL")
                    .execute(&pool)
                    .await?;
            }
            migrator.run(&pool).await.map_err(StoreError::from)
        };
        let mut attempt = 0u32;
        loop {
            match prepare().await {
                Ok(()) => break,
                Err(e) if sqlite_file && attempt < SQLITE_MIGRATE_RETRIES => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "alert store migration met another instance's; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
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
        Ok(with_database(admin_url, name))
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
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
}

/// `url` naming database `name` instead of its own, query parameters (`sslmode`,
/// `sslrootcert=/path/…`) kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
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

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_keep_their_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "cs_1"),
            "postgres://u:p@h:5432/cs_1"
        );
        assert_eq!(
            with_database(
                "postgres://u:p@h:5432/postgres?sslmode=verify-full&sslrootcert=/etc/ca/root.pem",
                "cs_1"
            ),
            "postgres://u:p@h:5432/cs_1?sslmode=verify-full&sslrootcert=/etc/ca/root.pem"
        );
        assert_eq!(
            with_database("postgres://u@h", "cs_1"),
            "postgres://u@h/cs_1"
        );
    }
}
