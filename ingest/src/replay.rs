//! WFDB records replayed as device streams: a [`Record`] cut into wire-format
//! [`Frame`]s as a device gateway would send them, for `cardiostream replay` (frames
//! published to Kafka) and the offline evaluation tools (frames fed to the pipeline's
//! stages).

use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, IdError, Lead, NanovoltsPerCount, PatientId, PulseKind,
    PulseWave, SampleRate, StreamId,
};

use crate::wfdb::{Record, SignalInfo, SignalReader, WfdbError};

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
    /// The record's files cannot be read.
    #[error(transparent)]
    Read(#[from] WfdbError),
    /// A signal the replay would send has several samples per frame: it runs at a
    /// multiple of the record's rate, and a stream has one rate.
    #[error("record {record}: signal {signal} ({desc}) has {spf} samples per frame; a stream has one sample rate: resample the record first (tools/wfdb_resample.py)")]
    SamplesPerFrame {
        /// The record.
        record: String,
        /// The signal's index.
        signal: usize,
        /// Its description.
        desc: String,
        /// Its samples per frame.
        spf: usize,
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
    leads_of(&rec.name, &rec.signals)
}

/// [`lead_signals`] of a record named `record` with these signals.
fn leads_of(record: &str, signals: &[SignalInfo]) -> Vec<(usize, Lead)> {
    let mut out: Vec<(usize, Lead)> = Vec::new();
    for (i, s) in signals.iter().enumerate() {
        let desc = s.description.trim();
        if pulse_kind(desc).is_some() {
            continue;
        }
        match ecg_lead(desc) {
            Some(l) if !out.iter().any(|o| o.1 == l) => out.push((i, l)),
            _ => {
                tracing::debug!(record, signal = i, "signal without a known lead left out")
            }
        }
    }
    if out.is_empty() {
        // No description names an ECG lead (`ML2`, `D1`, a vendor's label): the
        // first signal recorded in volts is taken as an unnamed lead.
        if let Some(i) = signals
            .iter()
            .position(|s| s.mv_per_unit().is_some() && pulse_kind(&s.description).is_none())
        {
            tracing::debug!(
                record,
                signal = i,
                "no named lead: the first signal in volts is the ECG"
            );
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
///
/// [`RecordSource::new`] replays a record held whole; [`RecordSource::open`] reads one
/// from its files a block at a time as its frames go out, in memory that does not grow
/// with its length (a Holter or patch recording of days). Both send the same frames.
#[derive(Debug)]
pub struct RecordSource {
    stream: StreamId,
    device: DeviceId,
    patient: PatientId,
    leads: Vec<Lead>,
    rate: SampleRate,
    /// The leads' physical samples from the record's sample `base` on.
    mv: Vec<Vec<f32>>,
    /// Pulsatile waveforms: kind and physical samples from sample `base` on.
    pulses: Vec<(PulseKind, Vec<f32>)>,
    base: usize,
    /// The part of a record opened from its files that is not read yet; `None` when
    /// the source holds the whole record.
    rest: Option<Rest>,
    /// The record's sampling frequency and frames, as its header gives them.
    record_fs: f64,
    record_frames: usize,
    pos: usize,
    end: usize,
    frame_samples: usize,
    t0_us: i64,
    seq: u64,
}

/// What a [`RecordSource`] opened from files reads next.
#[derive(Debug)]
struct Rest {
    reader: SignalReader,
    /// The record's signals sent as the leads, and as the pulse waveforms, in order
    /// (one sample per frame each: [`Plan::of`]).
    leads: Vec<usize>,
    pulses: Vec<usize>,
    /// Each pulse waveform's last valid sample (before any, its first valid one).
    held: Vec<f32>,
}

/// Frames read from a record's files at a time: 10 s at 500 Hz.
const BLOCK_FRAMES: usize = 5000;

/// Records of up to this many frames (4.4 min at 250 Hz) [`RecordSource::open`] reads
/// whole.
const WHOLE_FRAMES: usize = 1 << 16;

/// What a replay sends of a record: its rate, its leads and pulse waveforms (signal
/// indices), and its stream's identifiers.
struct Plan {
    rate: SampleRate,
    leads: Vec<(usize, Lead)>,
    pulses: Vec<(usize, PulseKind)>,
    stream: StreamId,
    device: DeviceId,
    patient: PatientId,
}

impl Plan {
    fn of(name: &str, fs: f64, signals: &[SignalInfo]) -> Result<Self, ReplayError> {
        let rounded = fs.round();
        if (fs - rounded).abs() > 1e-6
            || !(f64::from(SampleRate::MIN)..=f64::from(SampleRate::MAX)).contains(&rounded)
        {
            return Err(ReplayError::SampleRate {
                record: name.to_string(),
                fs,
            });
        }
        let mut pulses: Vec<(usize, PulseKind)> = Vec::new();
        for (i, s) in signals.iter().enumerate() {
            if let Some(kind) = pulse_kind(s.description.trim()) {
                if !pulses.iter().any(|p| p.1 == kind) {
                    pulses.push((i, kind));
                }
            }
        }
        let leads = leads_of(name, signals);
        if leads.is_empty() {
            return Err(ReplayError::NoLead {
                record: name.to_string(),
            });
        }
        let id = format!(
            "rec-{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        );
        let plan = Self {
            rate: SampleRate(rounded as u32),
            leads,
            pulses,
            stream: StreamId::new(id.clone()).map_err(|e| ReplayError::id("stream id", e))?,
            device: DeviceId::new("replay").map_err(|e| ReplayError::id("device id", e))?,
            patient: PatientId::new(id).map_err(|e| ReplayError::id("patient id", e))?,
        };
        if let Some(i) = plan.sent().find(|&i| signals[i].samples_per_frame != 1) {
            return Err(ReplayError::SamplesPerFrame {
                record: name.to_string(),
                signal: i,
                desc: signals[i].description.clone(),
                spf: signals[i].samples_per_frame,
            });
        }
        Ok(plan)
    }

    /// The signals sent: the leads', then the pulse waveforms'.
    fn sent(&self) -> impl Iterator<Item = usize> + '_ {
        self.leads
            .iter()
            .map(|l| l.0)
            .chain(self.pulses.iter().map(|p| p.0))
    }

    /// The source, holding samples `mv` and `pulses` from the record's start, `n`
    /// samples in all.
    #[allow(clippy::too_many_arguments)]
    fn source(
        self,
        (record_fs, record_frames): (f64, usize),
        mv: Vec<Vec<f32>>,
        pulses: Vec<Vec<f32>>,
        rest: Option<Rest>,
        n: usize,
        t0_us: i64,
        frame_ms: u32,
        max_seconds: Option<f64>,
    ) -> RecordSource {
        let fs = f64::from(self.rate.0);
        RecordSource {
            stream: self.stream,
            device: self.device,
            patient: self.patient,
            leads: self.leads.into_iter().map(|l| l.1).collect(),
            rate: self.rate,
            mv,
            pulses: self.pulses.iter().map(|p| p.1).zip(pulses).collect(),
            base: 0,
            rest,
            record_fs,
            record_frames,
            pos: 0,
            end: max_seconds.map_or(n, |s| n.min((s * fs) as usize)),
            frame_samples: ((fs * f64::from(frame_ms.max(1))) / 1000.0).ceil().max(1.0) as usize,
            t0_us,
            seq: 0,
        }
    }
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
        let plan = Plan::of(&rec.name, rec.fs, &rec.signals)?;
        // The record's frames, as far as every signal sent has samples (a file may
        // hold more when the header gives no frame count, as [`SignalReader`] reads).
        let n = plan
            .sent()
            .map(|i| rec.samples.get(i).map_or(0, Vec::len))
            .fold(rec.n_samples, usize::min);
        let physical = |i: usize| {
            let mut v = rec.physical(i);
            v.truncate(n);
            v
        };
        let mv: Vec<Vec<f32>> = plan.leads.iter().map(|&(i, _)| physical(i)).collect();
        let pulses: Vec<Vec<f32>> = plan
            .pulses
            .iter()
            .map(|&(i, kind)| {
                let mut v = physical(i);
                let mut held = first_valid(&v).unwrap_or(0.0);
                pulse_samples(kind, &mut v, &mut held);
                v
            })
            .collect();
        Ok(plan.source(
            (rec.fs, rec.n_samples),
            mv,
            pulses,
            None,
            n,
            t0_us,
            frame_ms,
            max_seconds,
        ))
    }

    /// Opens the record at `path_without_ext` (as [`crate::wfdb::read_record`] takes
    /// it) and reads it a block at a time as the frames go out, with one file open per
    /// signal file: the same frames as [`RecordSource::new`] on the record read whole.
    /// A record of up to 2^16 frames is read whole at once and its files closed.
    ///
    /// # Errors
    /// As [`RecordSource::new`], and when the record's files cannot be read.
    pub fn open(
        path_without_ext: &std::path::Path,
        t0_us: i64,
        frame_ms: u32,
        max_seconds: Option<f64>,
    ) -> Result<Self, ReplayError> {
        let reader = SignalReader::open(path_without_ext)?;
        if reader.n_frames() <= WHOLE_FRAMES {
            // Short: read whole (its frames; a longer file than the record is not read
            // on) and its files closed, so that replaying a folder of thousands of
            // short records keeps no file open.
            return Self::new(&reader.read_rest()?, t0_us, frame_ms, max_seconds);
        }
        let h = reader.header();
        let plan = Plan::of(&h.name, h.fs, &h.signals)?;
        // Frames sent: none when a signal sent is stored in no file (format 0).
        let n = if plan.sent().any(|i| h.signals[i].format == 0) {
            0
        } else {
            reader.n_frames()
        };
        // A pulse waveform that starts with missing samples repeats its first valid
        // one: look ahead for it in a pass of its own, which stops there.
        let mut held: Vec<Option<f32>> = vec![None; plan.pulses.len()];
        if n > 0 && !held.is_empty() {
            let mut ahead = SignalReader::open(path_without_ext)?;
            if ahead.header().signals.len() != h.signals.len() {
                return Err(ReplayError::Read(WfdbError::Signal {
                    path: path_without_ext.to_path_buf(),
                    msg: "the header changed while the record was opened".into(),
                }));
            }
            while held.iter().any(Option::is_none) {
                let Some(block) = ahead.read_frames(BLOCK_FRAMES)? else {
                    break;
                };
                for (f, &(i, _)) in held.iter_mut().zip(&plan.pulses) {
                    if f.is_none() {
                        *f = first_valid(&h.signals[i].physical(&block[i]));
                    }
                }
            }
        }
        let held = held.into_iter().map(|f| f.unwrap_or(0.0)).collect();
        let len = (h.fs, reader.n_frames());
        let rest = Rest {
            leads: plan.leads.iter().map(|l| l.0).collect(),
            pulses: plan.pulses.iter().map(|p| p.0).collect(),
            held,
            reader,
        };
        let (mv, pulses) = (
            vec![Vec::new(); rest.leads.len()],
            vec![Vec::new(); rest.pulses.len()],
        );
        Ok(plan.source(len, mv, pulses, Some(rest), n, t0_us, frame_ms, max_seconds))
    }

    /// Holds the samples up to `upto` (exclusive) of every signal, reading the next
    /// blocks of a record opened from its files and dropping the samples already sent.
    fn fill(&mut self, upto: usize) -> Result<(), ReplayError> {
        // Every signal sent has one sample per frame ([`Plan::of`]) and there is at
        // least one lead, so the first lead's buffer says how far all are held.
        let Some(rest) = &mut self.rest else {
            return Ok(());
        };
        if self.base + self.mv[0].len() >= upto {
            return Ok(());
        }
        let sent = self.pos - self.base;
        self.mv.iter_mut().for_each(|v| {
            v.drain(..sent);
        });
        self.pulses.iter_mut().for_each(|p| {
            p.1.drain(..sent);
        });
        self.base = self.pos;
        while self.base + self.mv[0].len() < upto {
            let Some(block) = rest.reader.read_frames(BLOCK_FRAMES)? else {
                // Fewer samples than the record's frame count promised (not for a
                // record that reads): the stream ends with them.
                self.end = self.base + self.mv[0].len();
                break;
            };
            let signals = &rest.reader.header().signals;
            for (v, &i) in self.mv.iter_mut().zip(&rest.leads) {
                v.extend(signals[i].physical(&block[i]));
            }
            for ((p, &i), held) in self.pulses.iter_mut().zip(&rest.pulses).zip(&mut rest.held) {
                let mut v = signals[i].physical(&block[i]);
                pulse_samples(p.0, &mut v, held);
                p.1.extend(v);
            }
        }
        Ok(())
    }

    /// The next frame, or `None` at the end of the record.
    ///
    /// # Errors
    /// When the next block of a record opened from its files cannot be read.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ReplayError> {
        if self.pos < self.end {
            self.fill(self.pos + self.frame_samples.min(self.end - self.pos))?;
        }
        // (`fill` ends the stream early when the record's files hold fewer frames.)
        if self.pos >= self.end {
            return Ok(None);
        }
        let n = self.frame_samples.min(self.end - self.pos);
        let (from, to) = (self.pos - self.base, self.pos - self.base + n);
        let mut samples = Vec::with_capacity(n * self.leads.len());
        let mut lead_off = vec![false; self.leads.len()];
        for (l, sig) in self.mv.iter().enumerate() {
            for &v in &sig[from..to] {
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
                    samples: v[from..to].to_vec(),
                })
                .collect(),
            pace: Vec::new(),
        };
        self.pos += n;
        self.seq += 1;
        Ok(Some(frame))
    }

    /// The record's sampling frequency (Hz), as its header gives it.
    pub fn record_fs(&self) -> f64 {
        self.record_fs
    }

    /// The record's frames: its header's count, or its shortest signal file's.
    pub fn record_frames(&self) -> usize {
        self.record_frames
    }

    /// Device time of the record's first sample (µs since the epoch).
    pub fn t0_us(&self) -> i64 {
        self.t0_us
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

/// The first valid (finite) sample of a signal.
fn first_valid(v: &[f32]) -> Option<f32> {
    v.iter().copied().find(|x| x.is_finite())
}

/// A pulse waveform's physical samples as sent: each invalid (non-finite) sample
/// replaced by `held`, the last valid one before it (which it updates), and arterial
/// pressure clamped to the wire format's range (a flush or a zeroing goes past it).
fn pulse_samples(kind: PulseKind, v: &mut [f32], held: &mut f32) {
    for x in v.iter_mut() {
        if x.is_finite() {
            *held = *x;
        } else {
            *x = *held;
        }
    }
    if kind == PulseKind::ArterialPressure {
        let (lo, hi) = crate::codec::ABP_RANGE_MMHG;
        v.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
    }
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
        let f = src.next_frame().unwrap().expect("a frame");
        // Signal 2 at 200 adu/uV: -50 adu is -0.25 uV, i.e. 0 counts of 1 uV.
        assert_eq!(f.samples, vec![0, 0, 0, 1]);
        // Nothing in volts: no lead, a clear error.
        let err = RecordSource::new(&record([("RESP", "Ohm"), ("X", "mmHg")]), 0, 1000, None)
            .expect_err("no ECG");
        assert!(matches!(err, ReplayError::NoLead { .. }), "{err}");
    }

    /// Every frame of a source.
    fn frames(mut src: RecordSource) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = src.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    /// A folder holding files `files` (name, bytes), removed when dropped.
    struct Folder(std::path::PathBuf);

    impl Folder {
        fn new(name: &str, files: &[(&str, Vec<u8>)]) -> Self {
            let dir = std::env::temp_dir().join(format!("replay-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (f, bytes) in files {
                std::fs::write(dir.join(f), bytes).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Format 16 bytes of interleaved signals.
    fn format16(frames: impl Iterator<Item = Vec<i16>>) -> Vec<u8> {
        frames.flatten().flat_map(i16::to_le_bytes).collect()
    }

    #[test]
    fn a_record_opened_from_its_files_replays_as_the_record_read_whole() {
        // 320 s at 250 Hz, past what is read whole and over many blocks: lead II, a
        // plethysmogram missing for its first 160 s (its first valid sample lies eight
        // blocks ahead) and an arterial pressure with a gap and a flush past the wire
        // format's range.
        let n = 80_000usize;
        let header = format!("r 3 250 {n}\nr.dat 16 200/mV 16 0 0 0 0 II\nr.dat 16 100/NU 16 0 0 0 0 PLETH\nr.dat 16 10/mmHg 16 0 0 0 0 ABP\n");
        let dat = format16((0..n).map(|t| {
            let ecg = ((t * 37) % 400) as i16 - 200;
            let pleth = if t < 40_000 {
                i16::MIN
            } else {
                10 + (t % 250) as i16
            };
            let abp = match t {
                45_000..=45_100 => i16::MIN,
                60_000..=60_050 => 32_000,
                _ => 800 + (t % 250) as i16,
            };
            vec![ecg, pleth, abp]
        }));
        let dir = Folder::new("open", &[("r.hea", header.into_bytes()), ("r.dat", dat)]);
        let path = dir.0.join("r");
        let rec = crate::wfdb::read_record(&path).unwrap();
        // Frames of 50, 325 (not a divisor of the block) and 3 samples.
        for (frame_ms, max) in [(200, None), (1300, Some(241.3)), (12, Some(25.0))] {
            let whole = frames(RecordSource::new(&rec, 5, frame_ms, max).unwrap());
            let opened = frames(RecordSource::open(&path, 5, frame_ms, max).unwrap());
            assert!(!whole.is_empty());
            assert_eq!(whole.len(), opened.len(), "{frame_ms} ms");
            assert!(whole == opened, "{frame_ms} ms frames differ");
        }
        // The plethysmogram's missing start repeats its first valid sample (0.1 NU).
        let first = RecordSource::open(&path, 0, 200, None)
            .unwrap()
            .next_frame()
            .unwrap()
            .unwrap();
        assert!(
            first.pulses[0].samples.iter().all(|&x| x == 0.1),
            "{:?}",
            first.pulses[0].samples
        );
    }

    #[test]
    fn files_of_different_lengths_and_rates_replay_alike_either_way() {
        // No frame count in the header, and a second file (a respiration signal, not
        // sent) shorter than the lead's: the record ends with its shortest file, read
        // whole or from its files, long (streamed) or short (read whole by `open` too).
        let header = "r 2 250\na.dat 16 200/mV 16 0 0 0 0 II\nb.dat 16 200/Ohm 16 0 0 0 0 RESP\n";
        for (long, short) in [(70_000usize, 68_000usize), (3_000, 10)] {
            let dir = Folder::new(
                "lengths",
                &[
                    ("r.hea", header.as_bytes().to_vec()),
                    ("a.dat", format16((0..long).map(|t| vec![(t % 300) as i16]))),
                    ("b.dat", format16((0..short).map(|t| vec![(t % 50) as i16]))),
                ],
            );
            let path = dir.0.join("r");
            let whole = frames(
                RecordSource::new(&crate::wfdb::read_record(&path).unwrap(), 0, 200, None).unwrap(),
            );
            let opened = frames(RecordSource::open(&path, 0, 200, None).unwrap());
            assert_eq!(whole.iter().map(|f| f.samples.len()).sum::<usize>(), short);
            assert!(whole == opened, "{long} and {short} frames");
        }
        let long = 70_000usize;
        // A lead of two samples per frame runs at twice the record's rate: no stream
        // carries it, either way.
        let header = "r 1 250 70000\na.dat 16x2 200/mV 16 0 0 0 0 II\n";
        let dir = Folder::new(
            "spf",
            &[
                ("r.hea", header.as_bytes().to_vec()),
                (
                    "a.dat",
                    format16((0..2 * long).map(|t| vec![(t % 300) as i16])),
                ),
            ],
        );
        let path = dir.0.join("r");
        for err in [
            RecordSource::new(&crate::wfdb::read_record(&path).unwrap(), 0, 200, None).unwrap_err(),
            RecordSource::open(&path, 0, 200, None).unwrap_err(),
        ] {
            assert!(
                matches!(err, ReplayError::SamplesPerFrame { spf: 2, .. }),
                "{err}"
            );
        }
        // Signals stored in no file (format 0) under a frame count of 10^11: nothing
        // to send, found at once.
        let header =
            "r 2 250 100000000000\na.dat 0 200/mV 16 0 0 0 0 II\na.dat 0 100/NU 16 0 0 0 0 PLETH\n";
        let dir = Folder::new("null", &[("r.hea", header.as_bytes().to_vec())]);
        let mut src = RecordSource::open(&dir.0.join("r"), 0, 200, None).unwrap();
        assert!(src.next_frame().unwrap().is_none());
    }
}
