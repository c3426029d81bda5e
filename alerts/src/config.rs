//! The alert service's settings: care teams and their on-call rotations, which team
//! looks after which stream, the routing tree, receivers, API tokens and the store.
//!
//! All of it comes from the `[alerts]` table of the TOML config (see
//! `config/alerts.example.toml`); [`ServiceConfig::validate`] checks the references
//! between its parts before the service starts.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use ecg_types::{AlertKind, Condition, Priority};
use serde::Deserialize;

use crate::receivers::ReceiverConfig;
use crate::rules::RuleSet;

/// Everything the alert service is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Consumer group of the alert service on the findings topic.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Which findings become alerts (defaults: [`RuleSet::default`]).
    #[serde(default)]
    pub rules: Option<RuleSet>,
    /// The durable store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Care teams.
    #[serde(default)]
    pub teams: Vec<Team>,
    /// Which team (and unit) looks after which streams; the first match applies.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
    /// Team of streams no assignment matches.
    #[serde(default = "default_team")]
    pub default_team: String,
    /// The routing tree.
    #[serde(default)]
    pub route: Route,
    /// Receivers by name.
    #[serde(default)]
    pub receivers: Vec<NamedReceiver>,
    /// API bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Longest silence the API accepts, seconds.
    #[serde(default = "default_max_silence_s")]
    pub max_silence_s: u64,
    /// Public base URL of the console, for links in notifications.
    #[serde(default)]
    pub console_url: Option<String>,
    /// How often due notifications, escalations and repeats are looked for, ms.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Directory with the model manifests and cards (`models/`), for the console.
    #[serde(default)]
    pub models_dir: Option<std::path::PathBuf>,
    /// A finding whose window ended more than this many seconds ago (its device time
    /// against the wall clock) is stale: what it decides is recorded in the store and
    /// the audit trail, but no one is paged for it. An alert recorded from stale
    /// findings is paged when a current finding shows its condition still present.
    #[serde(default = "default_stale_after_s")]
    pub stale_after_s: u64,
    /// Where a consumer group with no committed offset starts on the findings topic:
    /// `latest` (the default: a new alert service pages for what happens from now on)
    /// or `earliest` (it reads the topic's history first; stale findings are recorded,
    /// not paged). A group with committed offsets resumes from them either way.
    #[serde(default)]
    pub start_offset: StartOffset,
    /// How long resolved alerts (with their audit trail and deliveries) and ended
    /// silences are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// Retention of the store (`[alerts.retention]`): resolved alerts, with their audit
/// trail and deliveries, and silences that ended are deleted once older than
/// `keep_resolved_s`; every instance checks every `interval_s`. Open alerts are kept
/// however old.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Prune at all (false: keep everything, e.g. under a legal hold).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds a resolved alert (from its last change) or an ended silence is kept.
    #[serde(default = "default_keep_resolved_s")]
    pub keep_resolved_s: u64,
    /// Seconds between prunings.
    #[serde(default = "default_retention_interval_s")]
    pub interval_s: u64,
    /// Alerts deleted per transaction.
    #[serde(default = "default_retention_batch")]
    pub batch: u32,
}

fn default_true() -> bool {
    true
}
fn default_keep_resolved_s() -> u64 {
    90 * 86_400
}
fn default_retention_interval_s() -> u64 {
    3600
}
fn default_retention_batch() -> u32 {
    500
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_resolved_s: default_keep_resolved_s(),
            interval_s: default_retention_interval_s(),
            batch: default_retention_batch(),
        }
    }
}

/// Where a new consumer group starts on the findings topic (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOffset {
    /// The end of the topic: only findings published from now on.
    #[default]
    Latest,
    /// The start of the topic (its retention): history first.
    Earliest,
}

impl StartOffset {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartOffset::Latest => "latest",
            StartOffset::Earliest => "earliest",
        }
    }
}

fn default_group() -> String {
    "cardiostream-alerts".into()
}
fn default_team() -> String {
    "telemetry".into()
}
fn default_max_silence_s() -> u64 {
    4 * 3600
}
fn default_tick_ms() -> u64 {
    500
}
fn default_stale_after_s() -> u64 {
    300
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            group_id: default_group(),
            rules: None,
            store: StoreConfig::default(),
            teams: Vec::new(),
            assignments: Vec::new(),
            default_team: default_team(),
            route: Route::default(),
            receivers: Vec::new(),
            tokens: Vec::new(),
            max_silence_s: default_max_silence_s(),
            console_url: None,
            tick_ms: default_tick_ms(),
            models_dir: None,
            stale_after_s: default_stale_after_s(),
            start_offset: StartOffset::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Where alerts, the audit trail, deliveries and silences are kept (`Debug` shows the
/// URL without its password).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created if missing), `sqlite::memory:`, or `postgres://…`.
    /// Several alert instances need PostgreSQL.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Connections in the pool.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

fn default_store_url() -> String {
    "sqlite://cardiostream-alerts.db".into()
}
fn default_pool() -> u32 {
    8
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// A database URL without its password (`postgres://user:***@host/db`), for
/// messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            max_connections: default_pool(),
        }
    }
}

/// A care team.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Name, as routes, assignments and tokens refer to it.
    pub name: String,
    /// Its on-call rotation, if it has one.
    #[serde(default)]
    pub oncall: Option<Rotation>,
}

/// Who is on call: members take turns in shifts of `shift_hours` from `start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Members in turn order (role or staff handles, not patient data).
    pub members: Vec<String>,
    /// Length of a shift.
    #[serde(default = "default_shift_hours")]
    pub shift_hours: u32,
    /// Start of the first shift, RFC 3339.
    #[serde(with = "rfc3339")]
    pub start: SystemTime,
}

fn default_shift_hours() -> u32 {
    12
}

impl Rotation {
    /// The member on call at `now` (the first before `start`).
    pub fn on_call(&self, now: SystemTime) -> Option<&str> {
        if self.members.is_empty() {
            return None;
        }
        let shift = u64::from(self.shift_hours.max(1)) * 3600;
        let since = now
            .duration_since(self.start)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let i = (since / shift) as usize % self.members.len();
        Some(&self.members[i])
    }
}

/// Streams a team looks after, by stream or patient id prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Stream ids starting with this.
    #[serde(default)]
    pub stream_prefix: Option<String>,
    /// Pseudonymous patient ids starting with this.
    #[serde(default)]
    pub patient_prefix: Option<String>,
    /// The team.
    pub team: String,
    /// The care unit (ward), for routing and HL7 PV1.
    #[serde(default)]
    pub unit: Option<String>,
}

impl Assignment {
    fn matches(&self, stream: &str, patient: &str) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| stream.starts_with(p))
            && self
                .patient_prefix
                .as_deref()
                .is_none_or(|p| patient.starts_with(p))
    }
}

/// Matchers of a route: every one given must equal the alert's.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    /// Care unit.
    pub unit: Option<String>,
    /// Team.
    pub team: Option<String>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Kind.
    pub kind: Option<AlertKind>,
    /// Condition.
    pub condition: Option<Condition>,
}

/// What a route decides for an alert, before on-call lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts<'a> {
    /// Team.
    pub team: &'a str,
    /// Unit.
    pub unit: Option<&'a str>,
    /// Priority.
    pub priority: Priority,
    /// Kind.
    pub kind: AlertKind,
    /// Condition.
    pub condition: Condition,
}

impl Matchers {
    fn matches(&self, f: &Facts<'_>) -> bool {
        self.unit.as_deref().is_none_or(|u| f.unit == Some(u))
            && self.team.as_deref().is_none_or(|t| t == f.team)
            && self.priority.is_none_or(|p| p == f.priority)
            && self.kind.is_none_or(|k| k == f.kind)
            && self.condition.is_none_or(|c| c == f.condition)
    }
}

/// One step up the escalation chain, taken when an alert is still unacknowledged
/// `after_s` seconds after the previous step.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Seconds without acknowledgement before this step.
    pub after_s: u64,
    /// Team whose on-call member is notified (and who then sees the alert).
    #[serde(default)]
    pub team: Option<String>,
    /// Receivers notified at this step.
    #[serde(default)]
    pub receivers: Vec<String>,
}

/// A node of the routing tree (after Alertmanager's): an alert goes down the first
/// child whose matchers match — and on to later siblings when that child has
/// `continue = true`; where no child matches, the node itself takes it. Unset settings
/// are inherited from the parent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Matchers (ignored at the root).
    #[serde(default, rename = "match")]
    pub matchers: Matchers,
    /// Receivers notified first.
    #[serde(default)]
    pub receivers: Option<Vec<String>>,
    /// How long a medium or low priority alert waits, so that alerts of one patient
    /// go out together and episodes that clear at once never page anyone. High
    /// priority alerts never wait.
    #[serde(default)]
    pub group_wait_s: Option<u64>,
    /// How often an unacknowledged alert is sent again once the chain is exhausted.
    #[serde(default)]
    pub repeat_interval_s: Option<u64>,
    /// The escalation chain.
    #[serde(default)]
    pub escalation: Option<Vec<EscalationStep>>,
    /// Keep looking at later siblings after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// Children.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// The routing decision for one alert: stored with it, so that any instance can
/// escalate it later.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Plan {
    /// Receivers of the first notification.
    pub receivers: Vec<String>,
    /// Seconds a non-high alert waits before its first notification.
    pub group_wait_s: u64,
    /// Seconds between repeats once the chain is exhausted.
    pub repeat_interval_s: u64,
    /// Escalation chain.
    pub escalation: Vec<EscalationStep>,
}

const DEFAULT_GROUP_WAIT_S: u64 = 30;
const DEFAULT_REPEAT_S: u64 = 600;

impl Route {
    /// The plan for an alert: receivers of every matching leaf (in order, without
    /// repeats); the wait, repeat and chain of the first.
    pub fn plan(&self, f: &Facts<'_>) -> Plan {
        let mut leaves = Vec::new();
        let base = Plan {
            receivers: self.receivers.clone().unwrap_or_default(),
            group_wait_s: self.group_wait_s.unwrap_or(DEFAULT_GROUP_WAIT_S),
            repeat_interval_s: self.repeat_interval_s.unwrap_or(DEFAULT_REPEAT_S),
            escalation: self.escalation.clone().unwrap_or_default(),
        };
        self.walk(f, &base, &mut leaves);
        let mut plan = leaves.first().cloned().unwrap_or(base);
        let mut seen = HashSet::new();
        plan.receivers = leaves
            .iter()
            .flat_map(|p| p.receivers.iter())
            .filter(|r| seen.insert(r.as_str()))
            .cloned()
            .collect();
        plan
    }

    fn walk(&self, f: &Facts<'_>, inherited: &Plan, out: &mut Vec<Plan>) {
        let mut matched = false;
        for child in &self.routes {
            if !child.matchers.matches(f) {
                continue;
            }
            let plan = Plan {
                receivers: child
                    .receivers
                    .clone()
                    .unwrap_or_else(|| inherited.receivers.clone()),
                group_wait_s: child.group_wait_s.unwrap_or(inherited.group_wait_s),
                repeat_interval_s: child
                    .repeat_interval_s
                    .unwrap_or(inherited.repeat_interval_s),
                escalation: child
                    .escalation
                    .clone()
                    .unwrap_or_else(|| inherited.escalation.clone()),
            };
            child.walk(f, &plan, out);
            matched = true;
            if !child.continue_ {
                break;
            }
        }
        if !matched {
            out.push(inherited.clone());
        }
    }

    fn receiver_names(&self, out: &mut Vec<String>) {
        out.extend(self.receivers.iter().flatten().cloned());
        for s in self.escalation.iter().flatten() {
            out.extend(s.receivers.iter().cloned());
        }
        for c in &self.routes {
            c.receiver_names(out);
        }
    }

    fn team_names(&self, out: &mut Vec<String>) {
        out.extend(self.matchers.team.iter().cloned());
        for s in self.escalation.iter().flatten() {
            out.extend(s.team.iter().cloned());
        }
        for c in &self.routes {
            c.team_names(out);
        }
    }
}

/// A receiver with its name: `[[alerts.receivers]] name = "…", kind = "…", …`.
#[derive(Debug, Clone)]
pub struct NamedReceiver {
    /// Name routes refer to.
    pub name: String,
    /// Settings.
    pub config: ReceiverConfig,
}

impl<'de> Deserialize<'de> for NamedReceiver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            _ => return Err(D::Error::custom("a receiver needs a name")),
        };
        let config = ReceiverConfig::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("receiver {name:?}: {e}")))?;
        Ok(Self { name, config })
    }
}

/// An API bearer token: who holds it and which team's patients it sees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Team it acts for; `*` for every team (a charge nurse, the demo).
    pub team: String,
    /// Who acts with it, as the audit trail records it.
    pub actor: String,
    /// SHA-256 of the token, hex (so the config holds no secret).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// A config that cannot work, with what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("alerts config: {0}")]
pub struct ConfigError(pub String);

impl ServiceConfig {
    /// The team and unit looking after a stream.
    pub fn assign<'a>(&'a self, stream: &str, patient: &str) -> (&'a str, Option<&'a str>) {
        self.assignments
            .iter()
            .find(|a| a.matches(stream, patient))
            .map_or((self.default_team.as_str(), None), |a| {
                (a.team.as_str(), a.unit.as_deref())
            })
    }

    /// The on-call member of a team now.
    pub fn on_call(&self, team: &str, now: SystemTime) -> Option<String> {
        self.teams
            .iter()
            .find(|t| t.name == team)
            .and_then(|t| t.oncall.as_ref())
            .and_then(|r| r.on_call(now))
            .map(str::to_owned)
    }

    /// Checks that routes name known receivers and teams, and tokens are usable.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let receivers: HashSet<&str> = self.receivers.iter().map(|r| r.name.as_str()).collect();
        if receivers.len() != self.receivers.len() {
            return Err(ConfigError("two receivers share a name".into()));
        }
        let mut named = Vec::new();
        self.route.receiver_names(&mut named);
        if let Some(r) = named.iter().find(|r| !receivers.contains(r.as_str())) {
            return Err(ConfigError(format!(
                "route names receiver {r:?}, which is not among [[alerts.receivers]]"
            )));
        }
        let mut all_teams: Vec<&str> = self.teams.iter().map(|t| t.name.as_str()).collect();
        all_teams.push(&self.default_team);
        all_teams.extend(self.assignments.iter().map(|a| a.team.as_str()));
        all_teams.extend(
            self.tokens
                .iter()
                .map(|t| t.team.as_str())
                .filter(|t| *t != "*"),
        );
        if let Some(t) = all_teams.iter().find(|t| !valid_team_name(t)) {
            return Err(ConfigError(format!(
                "team name {t:?}: 1 to 64 characters, no commas, no control characters, not `*`"
            )));
        }
        let mut teams: HashSet<&str> = self.teams.iter().map(|t| t.name.as_str()).collect();
        teams.insert(self.default_team.as_str());
        for a in &self.assignments {
            teams.insert(a.team.as_str());
        }
        let mut route_teams = Vec::new();
        self.route.team_names(&mut route_teams);
        if let Some(t) = route_teams.iter().find(|t| !teams.contains(t.as_str())) {
            return Err(ConfigError(format!(
                "route names team {t:?}, which no [[alerts.teams]] or assignment defines"
            )));
        }
        for t in &self.teams {
            if let Some(r) = &t.oncall {
                if r.members.is_empty() {
                    return Err(ConfigError(format!(
                        "team {:?} has an on-call rotation without members",
                        t.name
                    )));
                }
            }
        }
        for t in &self.tokens {
            if t.token_sha256.is_none() == t.token_env.is_none() {
                return Err(ConfigError(format!(
                    "token of {:?} needs exactly one of token_sha256 or token_env",
                    t.actor
                )));
            }
            if let Some(h) = &t.token_sha256 {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ConfigError(format!(
                        "token_sha256 of {:?} is not 64 hex digits",
                        t.actor
                    )));
                }
            }
        }
        if self.group_id.is_empty() {
            return Err(ConfigError("group_id is empty".into()));
        }
        if self.tick_ms == 0 {
            return Err(ConfigError("tick_ms must be positive".into()));
        }
        let r = &self.retention;
        if r.keep_resolved_s == 0 || r.interval_s == 0 || r.batch == 0 {
            return Err(ConfigError(
                "retention: keep_resolved_s, interval_s and batch must be positive (enabled = false keeps everything)".into(),
            ));
        }
        if !(1..=7 * 86_400).contains(&self.stale_after_s) {
            return Err(ConfigError(format!(
                "stale_after_s {} is outside 1..=604800",
                self.stale_after_s
            )));
        }
        Ok(())
    }
}

/// A team name as the store keeps it (in a comma-separated list of the teams that
/// see an alert): 1 to 64 characters, no comma, no control character; `*` is the
/// token wildcard, never a team.
pub fn valid_team_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t != "*"
        && !t.contains(',')
        && !t.chars().any(crate::text::is_unsafe)
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_src: &str) -> ServiceConfig {
        toml::from_str(toml_src).expect("valid config")
    }

    const TREE: &str = r#"
        default_team = "telemetry"
        [route]
        receivers = ["ward"]
        group_wait_s = 20
        [[route.routes]]
        match = { priority = "high" }
        receivers = ["pager"]
        group_wait_s = 0
        continue = true
        escalation = [{ after_s = 60, team = "rapid-response", receivers = ["rrt"] }]
        [[route.routes]]
        match = { kind = "physiological" }
        receivers = ["hl7"]
        [[route.routes]]
        match = { team = "cardiology" }
        repeat_interval_s = 120
    "#;

    #[test]
    fn routing_tree_first_match_continue_and_inheritance() {
        let c = cfg(TREE);
        let high = Facts {
            team: "telemetry",
            unit: None,
            priority: Priority::High,
            kind: AlertKind::Physiological,
            condition: Condition::Asystole,
        };
        let p = c.route.plan(&high);
        assert_eq!(p.receivers, vec!["pager", "hl7"]);
        assert_eq!(p.group_wait_s, 0);
        assert_eq!(p.escalation.len(), 1);
        let low_ai = Facts {
            priority: Priority::Low,
            kind: AlertKind::AiScreening,
            ..high.clone()
        };
        let p = c.route.plan(&low_ai);
        assert_eq!(p.receivers, vec!["ward"]);
        assert_eq!(p.group_wait_s, 20);
        assert!(p.escalation.is_empty());
        let cardio = Facts {
            team: "cardiology",
            ..low_ai
        };
        let p = c.route.plan(&cardio);
        assert_eq!(p.receivers, vec!["ward"], "inherited from the root");
        assert_eq!(p.repeat_interval_s, 120);
    }

    #[test]
    fn validation_names_unknown_receivers_and_teams() {
        let err = cfg(TREE).validate().expect_err("receivers undefined");
        assert!(err.to_string().contains("\"ward\""), "{err}");
        let mut c = cfg(TREE);
        c.route.routes[0].escalation = Some(vec![EscalationStep {
            after_s: 1,
            team: Some("nobody".into()),
            receivers: vec![],
        }]);
        c.route.receivers = Some(vec![]);
        c.route.routes[0].receivers = Some(vec![]);
        c.route.routes[1].receivers = Some(vec![]);
        let err = c.validate().expect_err("team undefined");
        assert!(err.to_string().contains("nobody"), "{err}");
    }

    #[test]
    fn store_urls_are_redacted_in_messages_and_debug() {
        assert_eq!(
            redact_url("postgres://alerts:s3cret@db:5432/cs"),
            "postgres://alerts:***@db:5432/cs"
        );
        assert_eq!(redact_url("sqlite://alerts.db"), "sqlite://alerts.db");
        let c = StoreConfig {
            url: "postgres://alerts:s3cret@db:5432/cs".into(),
            max_connections: 2,
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn team_names_are_checked() {
        for bad in ["", "a,b", "*", "ward\u{202E}3"] {
            let c = ServiceConfig {
                default_team: bad.into(),
                ..ServiceConfig::default()
            };
            let e = c.validate().expect_err(bad).to_string();
            assert!(e.contains("team name"), "{bad:?}: {e}");
        }
        let c = ServiceConfig {
            default_team: "rapid_response%2".into(),
            ..ServiceConfig::default()
        };
        c.validate().expect("wildcards are plain characters");
    }

    #[test]
    fn receivers_are_named_and_checked() {
        let c = cfg(r#"
            [[receivers]]
            name = "ward"
            kind = "webhook"
            url = "http://127.0.0.1:9/hook"
            secret = "s"
        "#);
        assert_eq!(c.receivers[0].name, "ward");
        let bad: Result<ServiceConfig, _> = toml::from_str(
            r#"
            [[receivers]]
            name = "ward"
            kind = "webhook"
            url = "http://127.0.0.1:9/hook"
            secrett = "s"
        "#,
        );
        let e = bad.expect_err("typo refused").to_string();
        assert!(e.contains("ward") && e.contains("secrett"), "{e}");
    }

    #[test]
    fn rotation_turns_by_shift_and_assignment_by_prefix() {
        let c = cfg(r#"
            [[teams]]
            name = "cardiology"
            oncall = { members = ["dr-a", "dr-b", "dr-c"], shift_hours = 12, start = "2026-01-01T08:00:00Z" }
            [[assignments]]
            stream_prefix = "icu-"
            team = "cardiology"
            unit = "icu-2"
        "#);
        c.validate().expect("valid");
        let t0 = humantime::parse_rfc3339("2026-01-01T08:00:00Z").expect("time");
        let h = |n: u64| t0 + Duration::from_secs(n * 3600);
        assert_eq!(c.on_call("cardiology", h(0)).as_deref(), Some("dr-a"));
        assert_eq!(c.on_call("cardiology", h(13)).as_deref(), Some("dr-b"));
        assert_eq!(c.on_call("cardiology", h(36)).as_deref(), Some("dr-a"));
        assert_eq!(c.on_call("telemetry", h(0)), None);
        assert_eq!(c.assign("icu-7", "p"), ("cardiology", Some("icu-2")));
        assert_eq!(c.assign("ward-7", "p"), ("telemetry", None));
    }
}
