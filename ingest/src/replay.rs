//! WFDB records replayed as device streams: a [`Record`] cut into wire-format
//! [`Frame`]s as a device gateway would send them, for `cardiostream replay` (frames
//! published to Kafka) and the offline evaluation tools (frames fed to the pipeline's
//! stages).

use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, IdError, Lead, NanovoltsPerCount, PatientId, PulseKind,
    PulseWave, SampleRate, StreamId,
};

use crate::wfdb::Record;

/// Why a record cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The record's sample rate is fractional or outside the wire format's range.
    #[error("record {record} has sample rate {fs} Hz, not a whole rate the wire format carries")]
    SampleRate {
        /// The record.
        record: String,
        /// Its sample rate, Hz.
        fs: f64,
    },
    /// No signal of the record names a known lead.
    #[error("record {record} has no signal whose description names a known lead")]
    NoLead {
        /// The record.
        record: String,
    },
    /// An identifier derived from the record name is not a valid one.
    #[error("{what}")]
    Id {
        /// Which identifier (`stream id`, `device id`, `patient id`).
        what: &'static str,
        /// Why it is invalid.
        source: IdError,
    },
}

impl ReplayError {
    fn id(what: &'static str, source: IdError) -> Self {
        Self::Id { what, source }
    }
}

/// The pulsatile waveform a signal description names (`PLETH`, `ABP`, `ART`).
fn pulse_kind(desc: &str) -> Option<PulseKind> {
    match desc.trim().to_ascii_uppercase().as_str() {
        "PLETH" => Some(PulseKind::Pleth),
        "ABP" | "ART" => Some(PulseKind::ArterialPressure),
        _ => None,
    }
}

/// The ECG lead a signal description names: a lead name (`II`, `MLII`, `V1`,
/// `MDC_ECG_LEAD_AVF`); a bedside monitor's `V` (an unspecified chest lead); or an
/// `ECG`/`EKG` label, with a lead name after it (`ECG II`, `ECG lead V2`) or without
/// one (`ECG`, `ECG1`, `ECG 2`: Holter and long-term AF databases label their channels
/// so) as an unnamed lead.
fn ecg_lead(desc: &str) -> Option<Lead> {
    let desc = desc.trim();
    if desc == "V" {
        return Some(Lead::Unspecified);
    }
    if let Ok(l) = desc.parse::<Lead>() {
        return Some(l);
    }
    let head = desc.get(..3)?;
    if !(head.eq_ignore_ascii_case("ECG") || head.eq_ignore_ascii_case("EKG")) {
        return None;
    }
    let sep = |c: char| c.is_whitespace() || matches!(c, '_' | '-' | ':' | '.');
    let rest = desc[3..].trim_start_matches(sep);
    let rest = match rest.get(..4) {
        Some(w) if w.eq_ignore_ascii_case("lead") => rest[4..].trim_start_matches(sep),
        _ => rest,
    };
    if rest.chars().all(|c| c.is_ascii_digit()) {
        return Some(Lead::Unspecified);
    }
    rest.parse().ok()
}

/// The signals of `rec` that a replay sends as ECG leads, in frame order, with their
/// leads: those whose description names a lead ([`RecordSource`] has the rules), each
/// lead once; or, when none does, the first signal recorded in volts that is not a
/// pulse waveform, as an unnamed lead. `eval qrs` reads the same signals.
pub fn lead_signals(rec: &Record) -> Vec<(usize, Lead)> {
    let mut out: Vec<(usize, Lead)> = Vec::new();
    for (i, s) in rec.signals.iter().enumerate() {
        let desc = s.description.trim();
        if pulse_kind(desc).is_some() {
            continue;
        }
        match ecg_lead(desc) {
            Some(l) if !out.iter().any(|o| o.1 == l) => out.push((i, l)),
            _ => {
                tracing::debug!(record = %rec.name, signal = i, "signal without a known lead left out")
            }
        }
    }
    if out.is_empty() {
        // No description names an ECG lead (`ML2`, `D1`, a vendor's label): the
        // first signal recorded in volts is taken as an unnamed lead.
        if let Some(i) = rec
            .signals
            .iter()
            .position(|s| s.mv_per_unit().is_some() && pulse_kind(&s.description).is_none())
        {
            tracing::debug!(record = %rec.name, signal = i, "no named lead: the first signal in volts is the ECG");
            out.push((i, Lead::Unspecified));
        }
    }
    out
}

/// Amplitude resolution of replayed records: 1 µV per count.
pub const REPLAY_SCALE_NV: u32 = 1000;

/// A WFDB record replayed as a device stream: stream id `rec-NAME`, pseudonymous
/// patient `rec-NAME`, samples converted to 1 µV counts, leads named from the signal
/// descriptions (`MLII` is lead II, `MCL1` V1; a bedside monitor's `V` is an
/// unspecified chest lead, as is the first of a Holter's `ECG1`, `ECG2`; a record
/// with no named lead gets its first signal in volts as an unnamed lead). `PLETH` and
/// `ABP`/`ART` signals become the frames' pulsatile waveforms (arterial pressure
/// clamped to the wire format's range).
/// Signals whose description names nothing known (`RESP`), or a lead already taken,
/// are left out. Missing ECG samples (WFDB's invalid value) are
/// sent as 0 with the lead flagged off for that frame; a missing pulse sample repeats
/// the last valid one.
#[derive(Debug, Clone)]
pub struct RecordSource {
    stream: StreamId,
    device: DeviceId,
    patient: PatientId,
    leads: Vec<Lead>,
    rate: SampleRate,
    mv: Vec<Vec<f32>>,
    /// Pulsatile waveforms: kind and physical samples.
    pulses: Vec<(PulseKind, Vec<f32>)>,
    pos: usize,
    end: usize,
    frame_samples: usize,
    t0_us: i64,
    seq: u64,
}

impl RecordSource {
    /// Wraps a record: frames of `frame_ms` milliseconds, device time starting at
    /// `t0_us`, at most `max_seconds` of signal.
    ///
    /// # Errors
    /// When the record has a fractional sample rate, or no signal with a known lead.
    pub fn new(
        rec: &Record,
        t0_us: i64,
        frame_ms: u32,
        max_seconds: Option<f64>,
    ) -> Result<Self, ReplayError> {
        let fs = rec.fs.round();
        if (rec.fs - fs).abs() > 1e-6
            || !(f64::from(SampleRate::MIN)..=f64::from(SampleRate::MAX)).contains(&fs)
        {
            return Err(ReplayError::SampleRate {
                record: rec.name.clone(),
                fs: rec.fs,
            });
        }
        let mut pulses: Vec<(PulseKind, Vec<f32>)> = Vec::new();
        for (i, s) in rec.signals.iter().enumerate() {
            if let Some(kind) = pulse_kind(s.description.trim()) {
                if !pulses.iter().any(|p| p.0 == kind) {
                    let mut v = hold_invalid(rec.physical(i));
                    if kind == PulseKind::ArterialPressure {
                        // The wire format's range (a flush or a zeroing goes past it).
                        let (lo, hi) = crate::codec::ABP_RANGE_MMHG;
                        v.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
                    }
                    pulses.push((kind, v));
                }
            }
        }
        let (leads, mv): (Vec<Lead>, Vec<Vec<f32>>) = lead_signals(rec)
            .into_iter()
            .map(|(i, l)| (l, rec.physical(i)))
            .unzip();
        if leads.is_empty() {
            return Err(ReplayError::NoLead {
                record: rec.name.clone(),
            });
        }
        let n = mv
            .iter()
            .map(Vec::len)
            .chain(pulses.iter().map(|p| p.1.len()))
            .min()
            .unwrap_or(0);
        let end = max_seconds.map_or(n, |s| n.min((s * fs) as usize));
        let id = format!(
            "rec-{}",
            rec.name
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        );
        Ok(Self {
            stream: StreamId::new(id.clone()).map_err(|e| ReplayError::id("stream id", e))?,
            device: DeviceId::new("replay").map_err(|e| ReplayError::id("device id", e))?,
            patient: PatientId::new(id).map_err(|e| ReplayError::id("patient id", e))?,
            leads,
            rate: SampleRate(fs as u32),
            mv,
            pulses,
            pos: 0,
            end,
            frame_samples: ((fs * f64::from(frame_ms.max(1))) / 1000.0).ceil().max(1.0) as usize,
            t0_us,
            seq: 0,
        })
    }

    /// The next frame, or `None` at the end of the record.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.pos >= self.end {
            return None;
        }
        let n = self.frame_samples.min(self.end - self.pos);
        let mut samples = Vec::with_capacity(n * self.leads.len());
        let mut lead_off = vec![false; self.leads.len()];
        for (l, sig) in self.mv.iter().enumerate() {
            for &v in &sig[self.pos..self.pos + n] {
                if v.is_finite() {
                    samples.push((f64::from(v) * 1e6 / f64::from(REPLAY_SCALE_NV)).round() as i32);
                } else {
                    lead_off[l] = true;
                    samples.push(0);
                }
            }
        }
        let frame = Frame {
            stream: self.stream.clone(),
            device: self.device.clone(),
            patient: self.patient.clone(),
            seq: self.seq,
            t0: DeviceTimeUs(self.t0_us).plus_us(self.rate.samples_to_us(self.pos as u64)),
            sample_rate: self.rate,
            scale: NanovoltsPerCount(REPLAY_SCALE_NV),
            leads: self.leads.clone(),
            lead_off,
            samples,
            pulses: self
                .pulses
                .iter()
                .map(|(kind, v)| PulseWave {
                    kind: *kind,
                    sample_rate: self.rate,
                    samples: v[self.pos..self.pos + n].to_vec(),
                })
                .collect(),
            pace: Vec::new(),
        };
        self.pos += n;
        self.seq += 1;
        Some(frame)
    }

    /// The stream id.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The leads replayed, in frame order.
    pub fn leads(&self) -> &[Lead] {
        &self.leads
    }
}

/// A pulse signal with each invalid (non-finite) sample replaced by the last valid
/// one (the first valid one at the start; 0 if none).
fn hold_invalid(mut v: Vec<f32>) -> Vec<f32> {
    let mut last = v.iter().copied().find(|x| x.is_finite()).unwrap_or(0.0);
    for x in &mut v {
        if x.is_finite() {
            last = *x;
        } else {
            *x = last;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_descriptions_name_leads() {
        for (desc, lead) in [
            ("II", Some(Lead::II)),
            ("MLII", Some(Lead::II)),
            ("V", Some(Lead::Unspecified)),
            ("aVR", Some(Lead::AVR)),
            ("ECG", Some(Lead::Unspecified)),
            ("ECG1", Some(Lead::Unspecified)),
            ("ecg 2", Some(Lead::Unspecified)),
            ("EKG_0", Some(Lead::Unspecified)),
            ("ECG II", Some(Lead::II)),
            ("ECG lead V2", Some(Lead::V2)),
            ("ECG: aVF", Some(Lead::AVF)),
            ("RESP", None),
            ("PLETH", None),
            ("ECGX", None),
            ("EC", None),
            ("", None),
        ] {
            assert_eq!(ecg_lead(desc), lead, "{desc:?}");
        }
    }

    /// A two-signal record in memory (format 16), with these descriptions and units.
    fn record(signals: [(&str, &str); 2]) -> Record {
        let header = format!(
            "hol 2 250 4\nhol.dat 16 200/{} 16 0 0 0 0 {}\nhol.dat 16 200/{} 16 0 0 0 0 {}\n",
            signals[0].1, signals[0].0, signals[1].1, signals[1].0
        );
        let dat: Vec<u8> = [100i16, -50, 200, 0, 300, 50, 400, 100]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        crate::wfdb::read_record_with(std::path::Path::new("hol"), |p| {
            Ok(if p.extension().is_some_and(|e| e == "hea") {
                header.clone().into_bytes()
            } else {
                dat.clone()
            })
        })
        .expect("a valid record")
    }

    #[test]
    fn holter_labels_and_unnamed_signals_replay_as_an_unnamed_lead() {
        // A long-term AF database's `ECG1`/`ECG2`: the first is the stream's lead.
        let src = RecordSource::new(&record([("ECG1", "mV"), ("ECG2", "mV")]), 0, 1000, None)
            .expect("replayable");
        assert_eq!(src.leads(), &[Lead::Unspecified]);
        // No description names a lead: the first signal in volts is taken.
        let mut src = RecordSource::new(&record([("RESP", "Ohm"), ("ML2", "uV")]), 0, 1000, None)
            .expect("replayable");
        assert_eq!(src.leads(), &[Lead::Unspecified]);
        let f = src.next_frame().expect("a frame");
        // Signal 2 at 200 adu/uV: -50 adu is -0.25 uV, i.e. 0 counts of 1 uV.
        assert_eq!(f.samples, vec![0, 0, 0, 1]);
        // Nothing in volts: no lead, a clear error.
        let err = RecordSource::new(&record([("RESP", "Ohm"), ("X", "mmHg")]), 0, 1000, None)
            .expect_err("no ECG");
        assert!(matches!(err, ReplayError::NoLead { .. }), "{err}");
    }
}
