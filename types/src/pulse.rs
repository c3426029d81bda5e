use std::fmt;

use serde::{Deserialize, Serialize};

/// A pulsatile waveform that bedside monitors stream beside the ECG. Each beat of
/// the heart that ejects blood shows as a pulse in it, so it is evidence for or
/// against an ECG rhythm call (a pulse every second argues against asystole).
///
/// Identified on the wire by its IEEE 11073-10101 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PulseKind {
    /// Photoplethysmogram of a pulse oximeter (`MDC_PULS_OXIM_PLETH`, 150452), in
    /// dimensionless normalised units.
    Pleth,
    /// Invasive arterial blood pressure (`MDC_PRESS_BLD_ART_ABP`, 150036), in mmHg.
    ArterialPressure,
}

impl PulseKind {
    /// Every kind.
    pub const ALL: [PulseKind; 2] = [PulseKind::Pleth, PulseKind::ArterialPressure];

    /// IEEE 11073-10101 code of the waveform.
    pub fn mdc_code(self) -> u32 {
        match self {
            PulseKind::Pleth => 150_452,
            PulseKind::ArterialPressure => 150_036,
        }
    }

    /// The kind of an IEEE 11073-10101 waveform code, if it is one of ours.
    pub fn from_mdc_code(code: u32) -> Option<PulseKind> {
        Self::ALL.into_iter().find(|k| k.mdc_code() == code)
    }

    /// IEEE 11073-10101 unit code of the samples: `MDC_DIM_DIMLESS` (512) for the
    /// plethysmogram, `MDC_DIM_MMHG` (3872) for arterial pressure.
    pub fn mdc_unit(self) -> u32 {
        match self {
            PulseKind::Pleth => 512,
            PulseKind::ArterialPressure => 3872,
        }
    }

    /// Unit of the samples, as printed: `NU` (normalised units) or `mmHg`.
    pub fn unit(self) -> &'static str {
        match self {
            PulseKind::Pleth => "NU",
            PulseKind::ArterialPressure => "mmHg",
        }
    }

    /// Stable snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PulseKind::Pleth => "pleth",
            PulseKind::ArterialPressure => "arterial_pressure",
        }
    }
}

impl fmt::Display for PulseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for k in PulseKind::ALL {
            assert_eq!(PulseKind::from_mdc_code(k.mdc_code()), Some(k));
            let json = serde_json::to_string(&k).expect("serialises");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(PulseKind::from_mdc_code(1), None);
    }
}
