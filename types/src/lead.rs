use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ECG lead, identified on the wire by its IEEE 11073-10102 lead number
/// (`MDC_ECG_LEAD_I` = 1, `MDC_ECG_LEAD_II` = 2, …, `MDC_ECG_LEAD_AVF` = 64).
///
/// The twelve standard leads come first; the rest are leads that wearables,
/// Holter recorders and bedside monitors use for single- or few-lead monitoring.
/// A single-lead watch or handheld recording (thumb to thumb) is [`Lead::I`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Lead {
    /// Limb lead I (`MDC_ECG_LEAD_I`, 1).
    I,
    /// Limb lead II (`MDC_ECG_LEAD_II`, 2).
    II,
    /// Limb lead III (`MDC_ECG_LEAD_III`, 61).
    III,
    /// Augmented lead aVR (`MDC_ECG_LEAD_AVR`, 62).
    AVR,
    /// Augmented lead aVL (`MDC_ECG_LEAD_AVL`, 63).
    AVL,
    /// Augmented lead aVF (`MDC_ECG_LEAD_AVF`, 64).
    AVF,
    /// Precordial V1 (`MDC_ECG_LEAD_V1`, 3).
    V1,
    /// Precordial V2 (`MDC_ECG_LEAD_V2`, 4).
    V2,
    /// Precordial V3 (`MDC_ECG_LEAD_V3`, 5).
    V3,
    /// Precordial V4 (`MDC_ECG_LEAD_V4`, 6).
    V4,
    /// Precordial V5 (`MDC_ECG_LEAD_V5`, 7).
    V5,
    /// Precordial V6 (`MDC_ECG_LEAD_V6`, 8).
    V6,
    /// Posterior V7 (`MDC_ECG_LEAD_V7`, 9).
    V7,
    /// Right-sided V3R (`MDC_ECG_LEAD_V3R`, 11).
    V3R,
    /// Right-sided V4R (`MDC_ECG_LEAD_V4R`, 12).
    V4R,
    /// Bipolar chest lead CC5, common in Holter and patch monitors (`MDC_ECG_LEAD_CC5`, 19).
    CC5,
    /// Bipolar chest lead CM5, common in Holter and stress testing (`MDC_ECG_LEAD_CM5`, 20).
    CM5,
    /// A lead the device does not name (`MDC_ECG_LEAD_CONFIG`, 0), e.g. a patch whose
    /// electrode vector is fixed but not one of the standard leads.
    Unspecified,
}

/// A lead code or name that is not one of [`Lead`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lead {0:?}")]
pub struct UnknownLead(pub String);

impl Lead {
    /// Every lead, standard twelve first.
    pub const ALL: [Lead; 18] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
        Lead::V7,
        Lead::V3R,
        Lead::V4R,
        Lead::CC5,
        Lead::CM5,
        Lead::Unspecified,
    ];

    /// The standard 12 leads in the conventional order (I, II, III, aVR, aVL, aVF, V1–V6).
    pub const STANDARD_12: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The IEEE 11073-10102 lead number (`MDC_ECG_LEAD_*`).
    pub fn mdc_code(self) -> u16 {
        match self {
            Lead::Unspecified => 0,
            Lead::I => 1,
            Lead::II => 2,
            Lead::V1 => 3,
            Lead::V2 => 4,
            Lead::V3 => 5,
            Lead::V4 => 6,
            Lead::V5 => 7,
            Lead::V6 => 8,
            Lead::V7 => 9,
            Lead::V3R => 11,
            Lead::V4R => 12,
            Lead::CC5 => 19,
            Lead::CM5 => 20,
            Lead::III => 61,
            Lead::AVR => 62,
            Lead::AVL => 63,
            Lead::AVF => 64,
        }
    }

    /// The lead for an IEEE 11073-10102 lead number.
    pub fn from_mdc_code(code: u32) -> Option<Lead> {
        Lead::ALL
            .into_iter()
            .find(|l| u32::from(l.mdc_code()) == code)
    }

    /// The MDC reference id, e.g. `MDC_ECG_LEAD_AVF`.
    pub fn mdc_ref_id(self) -> String {
        match self {
            Lead::Unspecified => "MDC_ECG_LEAD_CONFIG".to_owned(),
            other => format!("MDC_ECG_LEAD_{}", other.name().to_ascii_uppercase()),
        }
    }

    /// The conventional short name (`I`, `aVR`, `V4R`, `CM5`, …).
    pub fn name(self) -> &'static str {
        match self {
            Lead::I => "I",
            Lead::II => "II",
            Lead::III => "III",
            Lead::AVR => "aVR",
            Lead::AVL => "aVL",
            Lead::AVF => "aVF",
            Lead::V1 => "V1",
            Lead::V2 => "V2",
            Lead::V3 => "V3",
            Lead::V4 => "V4",
            Lead::V5 => "V5",
            Lead::V6 => "V6",
            Lead::V7 => "V7",
            Lead::V3R => "V3R",
            Lead::V4R => "V4R",
            Lead::CC5 => "CC5",
            Lead::CM5 => "CM5",
            Lead::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Lead {
    type Err = UnknownLead;

    /// Parses a lead name case-insensitively (`II`, `avf`, `MLII` as lead II, `MDC_ECG_LEAD_V1`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("MDC_ECG_LEAD_").unwrap_or(t);
        // A modified chest lead 1 (MCL1, a bedside monitor's bipolar approximation of
        // V1) is taken as V1, as MLII is as II.
        if t.eq_ignore_ascii_case("MCL1") || t.eq_ignore_ascii_case("MCL") {
            return Ok(Lead::V1);
        }
        if t.eq_ignore_ascii_case("MLII") {
            return Ok(Lead::II);
        }
        if t.eq_ignore_ascii_case("CONFIG") {
            return Ok(Lead::Unspecified);
        }
        Lead::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownLead(s.to_owned()))
    }
}

impl TryFrom<String> for Lead {
    type Error = UnknownLead;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Lead> for String {
    fn from(l: Lead) -> String {
        l.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for l in Lead::ALL {
            assert!(seen.insert(l.mdc_code()), "duplicate code for {l}");
            assert_eq!(Lead::from_mdc_code(u32::from(l.mdc_code())), Some(l));
            assert_eq!(l.name().parse::<Lead>(), Ok(l));
        }
        assert_eq!(Lead::from_mdc_code(10_000), None);
        assert_eq!(Lead::AVF.mdc_ref_id(), "MDC_ECG_LEAD_AVF");
        assert_eq!("MLII".parse::<Lead>(), Ok(Lead::II));
        assert_eq!("MCL1".parse::<Lead>(), Ok(Lead::V1));
        assert_eq!("MDC_ECG_LEAD_V1".parse::<Lead>(), Ok(Lead::V1));
        assert!("V9X".parse::<Lead>().is_err());
    }
}
