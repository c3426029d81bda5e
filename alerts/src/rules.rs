//! Which findings become alerts.

use ecg_types::{AlertKind, Condition, Priority};
use serde::Deserialize;

/// One rule: a condition, the priority and kind of its alert, and how it clears.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The condition the rule matches.
    pub condition: Condition,
    /// Alert priority.
    pub priority: Priority,
    /// Alert kind.
    pub kind: AlertKind,
    /// Consecutive windows with the condition present before the alert fires
    /// (hysteresis against flapping); 1 fires on the first.
    #[serde(default = "one")]
    pub fire_after: u32,
    /// Consecutive windows with the condition absent on good signal before it resolves.
    #[serde(default = "two")]
    pub resolve_after: u32,
    /// Only findings from AI models (`decision_support`) or only from detectors; both if unset.
    #[serde(default)]
    pub from_models: Option<bool>,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules; the first that matches a finding applies.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The rule for a finding's condition and origin, if any.
    pub fn find(&self, condition: Condition, decision_support: bool) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.condition == condition && r.from_models.is_none_or(|m| m == decision_support)
        })
    }
}

impl Default for RuleSet {
    /// Defaults after common monitor practice: the lethal arrhythmias of IEC
    /// 60601-2-27 (asystole, extreme brady- and tachycardia, ventricular tachycardia,
    /// ventricular flutter/fibrillation) high; atrial fibrillation, brady- and tachycardia medium; frequent PVCs and
    /// technical conditions low; AI
    /// screening notifications low and labelled decision support.
    fn default() -> Self {
        use AlertKind::*;
        use Condition::*;
        use Priority::*;
        let r = |condition, priority, kind, fire_after, resolve_after| Rule {
            condition,
            priority,
            kind,
            fire_after,
            resolve_after,
            from_models: None,
        };
        RuleSet {
            rules: vec![
                r(Asystole, High, Physiological, 1, 2),
                r(VentricularTachycardia, High, Physiological, 1, 2),
                r(VentricularFibrillation, High, Physiological, 1, 2),
                r(ExtremeBradycardia, High, Physiological, 1, 2),
                r(ExtremeTachycardia, High, Physiological, 1, 2),
                r(Pause, Medium, Physiological, 1, 2),
                Rule {
                    from_models: Some(true),
                    ..r(AtrialFibrillation, Low, AiScreening, 1, 2)
                },
                r(AtrialFibrillation, Medium, Physiological, 2, 2),
                r(Bradycardia, Medium, Physiological, 2, 2),
                r(Tachycardia, Medium, Physiological, 2, 2),
                r(FrequentPvcs, Low, Physiological, 2, 2),
                r(LeadOff, Low, Technical, 1, 1),
                r(SignalGap, Low, Technical, 1, 1),
                Rule {
                    from_models: Some(true),
                    ..r(LowEjectionFraction, Low, AiScreening, 1, 1)
                },
            ],
        }
    }
}
