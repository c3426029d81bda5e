//! Escalation: the ticker that every instance runs — group waits that ended,
//! steps up the chain for alerts not acknowledged in time, repeats, and now and then
//! the store's retention — and the one escalation step the ticker and the escalate
//! action share.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ecg_types::AlertState;

use super::{next_wait, secs_ms, AlertService, UNACKED};
use crate::receivers::NotificationEvent;
use crate::store::{ms, AlertRecord, Change, Pruned, StoreError};

impl AlertService {
    /// Moves `rec` one step up its escalation chain (the step must exist) if it is
    /// still in one of `from` at its level and due time, tells that step's receivers,
    /// and returns it; `None` when someone else changed it first.
    pub(super) async fn escalate_step(
        self: &Arc<Self>,
        rec: &AlertRecord,
        from: &[AlertState],
        expect_due: Option<Option<i64>>,
        actor: &str,
        note: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let next = usize::try_from(rec.level).unwrap_or(usize::MAX);
        let c = Change {
            from,
            expect_level: Some(rec.level),
            expect_due,
            state: Some(AlertState::Escalated),
            level: Some(rec.level + 1),
            due: Some(Some(ms(now) + secs_ms(next_wait(rec, rec.level + 1)))),
            add_team: rec
                .plan
                .escalation
                .get(next)
                .and_then(|s| s.team.as_deref()),
            actor,
            action: "escalated",
            note,
            ..Change::default()
        };
        let Some(after) = self.store.change(&rec.id, &c, now).await? else {
            return Ok(None);
        };
        self.changed(self.to_alert(&after, now));
        self.notify(
            &after,
            NotificationEvent::Escalated,
            0,
            after.level,
            now,
            None,
        )
        .await?;
        Ok(Some(after))
    }

    /// Due work: group waits that ended, escalations, repeats, and notifications
    /// whose instance died. Run every `tick_ms` on every instance.
    ///
    /// # Errors
    /// Store errors.
    pub async fn tick(self: &Arc<Self>) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let now_ms = ms(now);
        for rec in self.store.due(now_ms, 200).await? {
            match rec.state {
                AlertState::Firing => self.first_notification(&rec, now, None).await?,
                AlertState::Notified | AlertState::Escalated => {
                    let next = usize::try_from(rec.level).unwrap_or(usize::MAX);
                    if next < rec.plan.escalation.len() {
                        self.escalate_step(
                            &rec,
                            UNACKED,
                            Some(rec.due_ms),
                            "escalation",
                            Some("not acknowledged in time"),
                            now,
                        )
                        .await?;
                    } else {
                        let c = Change {
                            from: UNACKED,
                            expect_level: Some(rec.level),
                            expect_due: Some(rec.due_ms),
                            due: Some(Some(now_ms + secs_ms(rec.plan.repeat_interval_s))),
                            actor: "escalation",
                            action: "repeat",
                            ..Change::default()
                        };
                        if let Some(after) = self.store.change(&rec.id, &c, now).await? {
                            // The repeat's scheduled second tells it apart from the
                            // others, the same on every instance.
                            let seq = u32::try_from(rec.due_ms.unwrap_or(now_ms) / 1000)
                                .unwrap_or(u32::MAX);
                            self.notify(
                                &after,
                                NotificationEvent::Repeat,
                                seq,
                                after.level,
                                now,
                                None,
                            )
                            .await?;
                        }
                    }
                }
                _ => {
                    let c = Change {
                        expect_due: Some(rec.due_ms),
                        due: Some(None),
                        actor: "engine",
                        action: "cleared-due",
                        ..Change::default()
                    };
                    self.store.change(&rec.id, &c, now).await?;
                }
            }
        }
        self.retry_stale(now).await?;
        self.store_af_older_than(crate::burden::STORE_AFTER, now)
            .await?;
        let refresh = {
            let mut last = self
                .last_precision
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if refresh {
            self.hooks.precision(&self.store.precision().await?);
        }
        let retention_due = self.cfg.retention.enabled && {
            let mut last = self
                .last_retention
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.cfg.retention.interval_s));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if retention_due {
            self.retain(now).await?;
        }
        Ok(())
    }

    /// Applies the retention as of `now`: deletes resolved alerts (with their audit
    /// trail and deliveries) and silences that ended more than `keep_resolved_s`
    /// before it. The ticker runs it every `interval_s`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn retain(&self, now: SystemTime) -> Result<Pruned, StoreError> {
        let keep = i64::try_from(self.cfg.retention.keep_resolved_s.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let p = self
            .store
            .prune(
                ms(now).saturating_sub(keep),
                i64::from(self.cfg.retention.batch),
            )
            .await?;
        if !p.is_empty() {
            tracing::info!(
                alerts = p.alerts,
                audit = p.audit,
                deliveries = p.deliveries,
                silences = p.silences,
                keep_resolved_s = self.cfg.retention.keep_resolved_s,
                "alert store pruned"
            );
        }
        self.hooks.pruned(&p);
        Ok(p)
    }
}
