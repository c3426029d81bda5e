//! Notify: what each escalation level is told, claimed in the store so that one
//! instance sends it, delivered on a spawned task; claims whose instance died
//! are taken over.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ecg_types::AlertState;

use super::{next_wait, secs_ms, AlertService, DELIVERY_LEASE};
use crate::receivers::{Notification, NotificationEvent, Receiver};
use crate::store::{ms, AlertRecord, Change, DeliveryKey, StoreError};

impl AlertService {
    /// Notifies the first receivers and moves firing → notified with the first
    /// escalation (or repeat) due.
    pub(super) async fn first_notification(
        self: &Arc<Self>,
        rec: &AlertRecord,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        let c = Change {
            from: &[AlertState::Firing],
            expect_due: Some(rec.due_ms),
            state: Some(AlertState::Notified),
            due: Some(Some(ms(now) + secs_ms(next_wait(rec, 0)))),
            notified: true,
            actor: "engine",
            action: "notified",
            ..Change::default()
        };
        if let Some(after) = self.store.change(&rec.id, &c, now).await? {
            self.changed(self.to_alert(&after, now));
            self.notify(&after, NotificationEvent::Fired, 0, 0, now, consumed)
                .await?;
        }
        Ok(())
    }

    /// Claims and sends one event to the receivers of one escalation level.
    pub(super) async fn notify(
        self: &Arc<Self>,
        rec: &AlertRecord,
        event: NotificationEvent,
        sequence: u32,
        level: i64,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        let (names, _) = self.level_targets(rec, level);
        let n = self.notification(rec, event, sequence, level, now);
        let event_key = n.event_key();
        for name in names {
            let Some(r) = self.receivers.get(&name).cloned() else {
                continue;
            };
            let key = DeliveryKey {
                alert: &rec.id,
                event: &event_key,
                level,
                receiver: &name,
            };
            if !self
                .store
                .claim(&key, r.kind(), &self.instance, now)
                .await?
            {
                continue;
            }
            self.spawn_delivery(r, n.clone(), event_key.clone(), level, consumed);
        }
        Ok(())
    }

    /// What the receivers of `level` are told about `rec`.
    fn notification(
        &self,
        rec: &AlertRecord,
        event: NotificationEvent,
        sequence: u32,
        level: i64,
        now: SystemTime,
    ) -> Notification {
        let (_, team) = self.level_targets(rec, level);
        Notification {
            alert: self.to_alert(rec, now),
            event,
            // Only an escalation step notifies an on-call member (of its team); the
            // first notification goes to the route's receivers, not to a person.
            recipient: if level > 0 {
                self.cfg.on_call(&team, now)
            } else {
                None
            },
            team,
            unit: rec.unit.clone(),
            escalation_level: u32::try_from(level).unwrap_or(u32::MAX),
            console_url: self.cfg.console_url.as_ref().map(|u| {
                format!(
                    "{}/#alert={}",
                    u.trim_end_matches('/'),
                    rec.id.replace('/', "%2F")
                )
            }),
            sequence,
        }
    }

    fn spawn_delivery(
        self: &Arc<Self>,
        r: Arc<Receiver>,
        n: Notification,
        event_key: String,
        level: i64,
        consumed: Option<Instant>,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let (ok, attempts, error) = match r.deliver(&n).await {
                Ok(d) => (true, d.attempts, None),
                Err(e) => (false, e.attempts, Some(e.to_string())),
            };
            me.hooks
                .delivery(r.kind(), ok, consumed.map(|c| c.elapsed()));
            if let Err(e) = me
                .store
                .delivered(
                    &DeliveryKey {
                        alert: &n.alert.id,
                        event: &event_key,
                        level,
                        receiver: r.name(),
                    },
                    ok,
                    attempts,
                    error.as_deref(),
                    SystemTime::now(),
                )
                .await
            {
                tracing::warn!(error = %e, "recording a delivery failed");
            }
        });
    }

    /// Receivers and team of an escalation level.
    fn level_targets(&self, rec: &AlertRecord, level: i64) -> (Vec<String>, String) {
        if level <= 0 {
            return (rec.plan.receivers.clone(), rec.team.clone());
        }
        let step = usize::try_from(level - 1)
            .ok()
            .and_then(|i| rec.plan.escalation.get(i));
        match step {
            Some(s) => (
                s.receivers.clone(),
                s.team.clone().unwrap_or_else(|| rec.team.clone()),
            ),
            None => (rec.plan.receivers.clone(), rec.team.clone()),
        }
    }

    /// After an acknowledgement or resolution: tell every level notified so far.
    pub(super) async fn after_close(
        self: &Arc<Self>,
        rec: &AlertRecord,
        event: NotificationEvent,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        self.changed(self.to_alert(rec, now));
        if rec.notified_ms.is_none() {
            return Ok(());
        }
        for level in 0..=rec.level {
            self.notify(rec, event, 0, level, now, consumed).await?;
        }
        Ok(())
    }

    pub(super) async fn retry_stale(self: &Arc<Self>, now: SystemTime) -> Result<(), StoreError> {
        let stale = ms(now) - i64::try_from(DELIVERY_LEASE.as_millis()).unwrap_or(i64::MAX);
        for (alert_id, d) in self.store.stale_deliveries(stale, 50).await? {
            let Some(r) = self.receivers.get(&d.receiver).cloned() else {
                continue;
            };
            let Some(rec) = self.store.get(&alert_id).await? else {
                continue;
            };
            if !self
                .store
                .reclaim(&alert_id, &d, &self.instance, now)
                .await?
            {
                continue;
            }
            let (event, sequence) = NotificationEvent::from_key(&d.event);
            let n = self.notification(&rec, event, sequence, d.level, now);
            self.spawn_delivery(r, n, d.event.clone(), d.level, None);
        }
        Ok(())
    }
}
