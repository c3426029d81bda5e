//! WFDB record reader: header (`.hea`) parsing, signal files in formats 8, 16, 24,
//! 32, 61, 80, 160, 212, 310 and 311 (including the MATLAB v4 `.mat` signal files of
//! the PhysioNet/CinC challenges), and MIT-format annotation files (`.atr`, `.qrs`…).
//!
//! The reader is strict about structure and lenient about content: malformed input
//! yields a [`WfdbError`] naming the file and the problem, never a panic.
//!
//! A record is read whole ([`read_record`]) or a block of frames at a time
//! ([`SignalReader`], for records of days); both decode through the same code.
//!
//! Not supported (reported as [`WfdbError::Unsupported`]): multi-segment records,
//! FLAC formats (508/516/524) and formats 0 (null signals) or unknown codes. Skew is
//! parsed but not applied. Signals with several samples per frame keep all their
//! samples (so their `samples` vector is `samples_per_frame` times longer).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a record or annotation file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WfdbError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, so not also a `source` that a report of
        /// the error's chain would print again).
        error: std::io::Error,
    },
    /// The header file is malformed.
    #[error("{path}: line {line}: {msg}")]
    Header {
        /// The header file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The record uses a feature this reader does not implement.
    #[error("{path}: unsupported: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The feature.
        what: String,
    },
    /// A signal file is malformed (too short, bad MAT header…).
    #[error("{path}: {msg}")]
    Signal {
        /// The signal file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An annotation file is malformed.
    #[error("{path}: byte {offset}: {msg}")]
    Annotation {
        /// The annotation file.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        msg: String,
    },
}

/// Default ADC gain (adu per physical unit) when the header gives none or zero.
pub const DEFAULT_GAIN: f64 = 200.0;
/// Default sampling frequency (Hz) when the header gives none.
pub const DEFAULT_FS: f64 = 250.0;

/// One signal as described by its header line.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalInfo {
    /// Signal file name, relative to the header's directory.
    pub file_name: String,
    /// Storage format code (16, 212, …).
    pub format: u32,
    /// Samples per frame (the `x` modifier; 1 by default).
    pub samples_per_frame: usize,
    /// Skew in frames (the `:` modifier; parsed, not applied).
    pub skew: u64,
    /// Byte offset of the first sample in the file (the `+` modifier; for `.mat`
    /// files without it, taken from the MAT v4 header).
    pub byte_offset: u64,
    /// ADC gain, adu per physical unit (default 200).
    pub gain: f64,
    /// Baseline, the adu value of 0 physical units (default: `adc_zero`).
    pub baseline: i32,
    /// Physical units (default `mV`).
    pub units: String,
    /// ADC resolution in bits (0 if not given).
    pub adc_res: u32,
    /// ADC zero (default 0).
    pub adc_zero: i32,
    /// Initial value (first sample; the start of format 8 differences).
    pub init_value: i32,
    /// 16-bit checksum of all samples as given by the header, if any.
    pub checksum: Option<i16>,
    /// Block size (0 for ordinary files).
    pub block_size: u32,
    /// Description (lead name, e.g. `MLII`).
    pub description: String,
}

impl SignalInfo {
    /// Physical values of this signal's digital samples `d`: `(d - baseline) / gain`,
    /// converted to millivolts when the units are `uV`/`µV` (or `V`); other units are
    /// returned unconverted. Missing samples (the WFDB invalid value for the format)
    /// become NaN.
    pub fn physical(&self, d: &[i32]) -> Vec<f32> {
        let scale = self.mv_per_unit().unwrap_or(1.0);
        let invalid = invalid_value(self.format);
        let gain = if self.gain == 0.0 {
            DEFAULT_GAIN
        } else {
            self.gain
        };
        d.iter()
            .map(|&v| {
                if Some(v) == invalid {
                    f32::NAN
                } else {
                    ((f64::from(v) - f64::from(self.baseline)) / gain * scale) as f32
                }
            })
            .collect()
    }

    /// Millivolts per physical unit when the units are a voltage (`mV`, `uV`/`µV`/
    /// `microvolts`, `V`), `None` otherwise.
    pub fn mv_per_unit(&self) -> Option<f64> {
        match self.units.trim() {
            "mV" => Some(1.0),
            "uV" | "µV" | "microvolts" => Some(1e-3),
            "V" => Some(1e3),
            _ => None,
        }
    }
}

/// A WFDB record held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Record name from the header.
    pub name: String,
    /// Sampling frequency (Hz) of frames.
    pub fs: f64,
    /// Number of frames (samples per signal when each has one sample per frame).
    pub n_samples: usize,
    /// One entry per signal, header order.
    pub signals: Vec<SignalInfo>,
    /// Digital samples, per signal.
    pub samples: Vec<Vec<i32>>,
    /// Comment lines of the header, without the leading `#`.
    pub comments: Vec<String>,
}

/// Digital value WFDB uses to flag a missing sample in 16-bit formats.
const INVALID_16: i32 = -32768;

impl Record {
    /// Physical values of signal `sig` ([`SignalInfo::physical`]); an empty vector
    /// when `sig` is out of range.
    pub fn physical(&self, sig: usize) -> Vec<f32> {
        match (self.signals.get(sig), self.samples.get(sig)) {
            (Some(info), Some(d)) => info.physical(d),
            _ => Vec::new(),
        }
    }

    /// True when the sum of signal `sig`'s samples, truncated to 16 bits, matches the
    /// header checksum (or the header has none).
    pub fn checksum_ok(&self, sig: usize) -> bool {
        match (self.signals.get(sig), self.samples.get(sig)) {
            (Some(info), Some(d)) => match info.checksum {
                None => true,
                Some(c) => {
                    let s = d.iter().fold(0i64, |a, &v| a.wrapping_add(i64::from(v)));
                    (s as u16) as i16 == c
                }
            },
            _ => false,
        }
    }
}

fn invalid_value(format: u32) -> Option<i32> {
    match format {
        16 | 61 | 160 => Some(INVALID_16),
        212 => Some(-2048),
        310 | 311 => Some(-512),
        80 => Some(-128),
        24 => Some(-(1 << 23)),
        32 => Some(i32::MIN),
        _ => None,
    }
}

/// The parsed contents of a header file.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Record name.
    pub name: String,
    /// Sampling frequency (Hz).
    pub fs: f64,
    /// Number of frames, if given (and non-zero).
    pub n_samples: Option<usize>,
    /// Signals.
    pub signals: Vec<SignalInfo>,
    /// Comment lines.
    pub comments: Vec<String>,
}

fn path_with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, WfdbError> {
    fs::read(path).map_err(|error| WfdbError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Parses the text of a header file; `path` is only used in error messages.
///
/// # Errors
/// [`WfdbError::Header`] for a malformed line, [`WfdbError::Unsupported`] for a
/// multi-segment record.
pub fn parse_header(text: &str, path: &Path) -> Result<Header, WfdbError> {
    let herr = |line: usize, msg: String| WfdbError::Header {
        path: path.to_path_buf(),
        line,
        msg,
    };
    let mut comments = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(c) = l.strip_prefix('#') {
            comments.push(c.trim().to_string());
        } else if !l.is_empty() {
            lines.push((i + 1, l));
        }
    }
    let Some(&(rec_line_no, rec_line)) = lines.first() else {
        return Err(herr(1, "no record line".into()));
    };
    let mut f = rec_line.split_whitespace();
    let name_field = f.next().unwrap_or_default();
    if name_field.contains('/') {
        return Err(WfdbError::Unsupported {
            path: path.to_path_buf(),
            what: format!("multi-segment record {name_field:?}"),
        });
    }
    let nsig: usize = f
        .next()
        .ok_or_else(|| herr(rec_line_no, "missing number of signals".into()))?
        .parse()
        .map_err(|e| herr(rec_line_no, format!("bad number of signals: {e}")))?;
    let fs = match f.next() {
        None => DEFAULT_FS,
        Some(s) => {
            let s = s.split(['/', '(']).next().unwrap_or(s);
            let v: f64 = s
                .parse()
                .map_err(|e| herr(rec_line_no, format!("bad sampling frequency {s:?}: {e}")))?;
            if !(v.is_finite() && v > 0.0) {
                return Err(herr(rec_line_no, format!("bad sampling frequency {v}")));
            }
            v
        }
    };
    let n_samples = match f.next() {
        None => None,
        Some(s) => {
            let v: usize = s
                .parse()
                .map_err(|e| herr(rec_line_no, format!("bad number of samples {s:?}: {e}")))?;
            (v > 0).then_some(v)
        }
    };
    // `lines` holds the record line, so it is never empty; comparing against
    // `lines.len() - 1` keeps a signal count like 2^64-1 from overflowing `nsig + 1`
    // (and bounds the `Vec::with_capacity(nsig)` below by the header's own size).
    let signal_lines = lines.len() - 1;
    if signal_lines < nsig {
        return Err(herr(
            rec_line_no,
            format!("header declares {nsig} signals but has {signal_lines} signal lines"),
        ));
    }
    let mut signals = Vec::with_capacity(nsig);
    for &(ln, l) in &lines[1..=nsig] {
        signals.push(parse_signal_line(l).map_err(|m| herr(ln, m))?);
    }
    Ok(Header {
        name: name_field.to_string(),
        fs,
        n_samples,
        signals,
        comments,
    })
}

fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("bad {what} {s:?}: {e}"))
}

fn parse_signal_line(l: &str) -> Result<SignalInfo, String> {
    let mut f = l.split_whitespace();
    let file_name = f.next().ok_or("empty signal line")?.to_string();
    let fmt_field = f.next().ok_or("missing format")?;
    // format[xspf][:skew][+offset]
    let (fmt_skew_spf, offset) = match fmt_field.split_once('+') {
        Some((a, b)) => (a, parse_num::<u64>(b, "byte offset")?),
        None => (fmt_field, 0),
    };
    let (fmt_spf, skew) = match fmt_skew_spf.split_once(':') {
        Some((a, b)) => (a, parse_num::<u64>(b, "skew")?),
        None => (fmt_skew_spf, 0),
    };
    let (fmt, spf) = match fmt_spf.split_once('x') {
        Some((a, b)) => (a, parse_num::<usize>(b, "samples per frame")?),
        None => (fmt_spf, 1),
    };
    let format: u32 = parse_num(fmt, "format")?;
    if spf == 0 {
        return Err("samples per frame is 0".into());
    }
    // gain[(baseline)][/units]
    let mut gain = DEFAULT_GAIN;
    let mut baseline: Option<i32> = None;
    let mut units = "mV".to_string();
    let mut explicit_offset = offset;
    if let Some(g) = f.next() {
        let (gb, u) = match g.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (g, None),
        };
        if let Some(u) = u {
            units = u.to_string();
        }
        let (gs, bs) = match gb.split_once('(') {
            Some((a, b)) => (a, Some(b.trim_end_matches(')'))),
            None => (gb, None),
        };
        let gv: f64 = parse_num(gs, "gain")?;
        if !gv.is_finite() {
            return Err(format!("bad gain {gs:?}"));
        }
        gain = if gv == 0.0 { DEFAULT_GAIN } else { gv };
        if let Some(b) = bs {
            baseline = Some(parse_num(b, "baseline")?);
        }
    }
    let adc_res: u32 = match f.next() {
        Some(s) => parse_num(s, "ADC resolution")?,
        None => 0,
    };
    let adc_zero: i32 = match f.next() {
        Some(s) => parse_num(s, "ADC zero")?,
        None => 0,
    };
    let init_value: i32 = match f.next() {
        Some(s) => parse_num(s, "initial value")?,
        None => adc_zero,
    };
    let checksum: Option<i16> = match f.next() {
        Some(s) => Some(parse_num::<i32>(s, "checksum")? as i16),
        None => None,
    };
    let block_size: u32 = match f.next() {
        Some(s) => parse_num(s, "block size")?,
        None => 0,
    };
    let description = f.collect::<Vec<_>>().join(" ");
    if explicit_offset == 0 && format == 0 {
        explicit_offset = 0;
    }
    Ok(SignalInfo {
        file_name,
        format,
        samples_per_frame: spf,
        skew,
        byte_offset: explicit_offset,
        gain,
        baseline: baseline.unwrap_or(adc_zero),
        units,
        adc_res,
        adc_zero,
        init_value,
        checksum,
        block_size,
        description,
    })
}

/// Reads a record's header only (`path_without_ext` as for [`read_record`]): its
/// signals' descriptions and its comment lines, without their samples.
///
/// # Errors
/// A [`WfdbError`] naming the file and the problem.
pub fn read_header(path_without_ext: &Path) -> Result<Header, WfdbError> {
    read_header_with(path_without_ext, &mut |p| fs::read(p)).map(|(header, _)| header)
}

/// The header of the record at `path_without_ext`, read by `read`, and its path.
fn read_header_with<F>(
    path_without_ext: &Path,
    read: &mut F,
) -> Result<(Header, PathBuf), WfdbError>
where
    F: FnMut(&Path) -> std::io::Result<Vec<u8>>,
{
    let hea = path_with_suffix(path_without_ext, ".hea");
    let bytes = read(&hea).map_err(|error| WfdbError::Io {
        path: hea.clone(),
        error,
    })?;
    let header = parse_header(&String::from_utf8_lossy(&bytes), &hea)?;
    Ok((header, hea))
}

/// Reads a record: `path_without_ext` is the record path without `.hea` (e.g.
/// `…/mitdb/100`); signal files are looked up next to the header. A signal file
/// name that leads outside the header's directory (absolute, or with `..`) is
/// [`WfdbError::Unsupported`]: a header never makes the reader open other files.
/// For a record too long to hold whole, [`SignalReader`] reads it a block at a time.
///
/// # Errors
/// A [`WfdbError`] naming the file and the problem.
pub fn read_record(path_without_ext: &Path) -> Result<Record, WfdbError> {
    SignalReader::open(path_without_ext)?.into_record()
}

/// [`read_record`] with the files read by `read` (called with the header's path,
/// then with each signal file's path) instead of from the file system: for records
/// held in memory, archives, and the fuzzing campaigns (docs/fuzzing.md).
///
/// # Errors
/// As [`read_record`]; an error of `read` is [`WfdbError::Io`] naming the file.
pub fn read_record_with<F>(path_without_ext: &Path, read: F) -> Result<Record, WfdbError>
where
    F: FnMut(&Path) -> std::io::Result<Vec<u8>>,
{
    SignalReader::open_with(path_without_ext, read)?.into_record()
}

/// A reader of a signal file's bytes, from the file's start.
type ByteSource = Box<dyn Read + Send>;

/// A record's signals read a block of frames at a time, from files read as they are
/// needed: memory stays that of a block whatever the record's length (a Holter or
/// patch recording of days). [`read_record`] reads a record whole through one. Opening
/// checks what [`read_record`] checks (the header, each signal file's format, offset
/// and length against the header's frame count), so a record that opens reads to its
/// end unless a file changes or fails underneath.
pub struct SignalReader {
    header: Header,
    files: Vec<SignalFile>,
    /// Frames of the record: the header's count, or the shortest file's.
    n_frames: usize,
    /// Frames handed out by [`SignalReader::read_frames`].
    read: usize,
}

impl std::fmt::Debug for SignalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalReader")
            .field("record", &self.header.name)
            .field("n_frames", &self.n_frames)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// One signal file of a record, decoded a block of frames at a time.
struct SignalFile {
    path: PathBuf,
    bytes: ByteSource,
    format: u32,
    /// Samples and bytes of the format's smallest whole group ([`group`]).
    group: (usize, usize),
    /// The record's signals this file holds, in frame order: index and samples per frame.
    signals: Vec<(usize, usize)>,
    /// Samples per frame over the file's signals.
    frame: usize,
    /// Frames the file holds (the header's count when it gives one).
    n_frames: usize,
    /// Frames decoded so far.
    read: usize,
    /// Samples decoded but not yet handed out: a block of frames can end inside a
    /// group of a packed format (212, 310, 311).
    carry: Vec<i32>,
    /// Format 8: each signal's running value (its first differences add up across
    /// blocks), from the header's initial value.
    level: Vec<i32>,
    buf: Vec<u8>,
}

impl SignalReader {
    /// Opens the record at `path_without_ext` (as for [`read_record`]), its signal
    /// files read as they are needed.
    ///
    /// # Errors
    /// As [`read_record`], for everything that can be checked before the samples are
    /// read.
    pub fn open(path_without_ext: &Path) -> Result<Self, WfdbError> {
        Self::open_from(path_without_ext, |p| {
            let f = fs::File::open(p)?;
            let meta = f.metadata()?;
            if meta.is_file() {
                // Read a block at a time, each read as large as the block.
                Ok((Box::new(f) as ByteSource, meta.len()))
            } else {
                // A pipe or a device has no length to check the header against until
                // it is read (and a directory fails here, as a read).
                let mut bytes = Vec::new();
                (&f).read_to_end(&mut bytes)?;
                let len = bytes.len() as u64;
                Ok((Box::new(std::io::Cursor::new(bytes)) as ByteSource, len))
            }
        })
    }

    /// [`SignalReader::open`] with the files read by `read`, as for
    /// [`read_record_with`] (records in memory, the fuzzing campaigns).
    ///
    /// # Errors
    /// As [`read_record_with`], for everything that can be checked before the samples
    /// are read.
    pub fn open_with<F>(path_without_ext: &Path, mut read: F) -> Result<Self, WfdbError>
    where
        F: FnMut(&Path) -> std::io::Result<Vec<u8>>,
    {
        Self::open_from(path_without_ext, |p| {
            let bytes = read(p)?;
            let len = bytes.len() as u64;
            Ok((Box::new(std::io::Cursor::new(bytes)) as ByteSource, len))
        })
    }

    /// Opens a record whose files `open` gives as a reader and a length (header first).
    fn open_from<F>(path_without_ext: &Path, mut open: F) -> Result<Self, WfdbError>
    where
        F: FnMut(&Path) -> std::io::Result<(ByteSource, u64)>,
    {
        let (mut header, hea) = read_header_with(path_without_ext, &mut |p: &Path| {
            let mut bytes = Vec::new();
            open(p)?.0.read_to_end(&mut bytes)?;
            Ok(bytes)
        })?;
        let dir = hea.parent().map(Path::to_path_buf).unwrap_or_default();

        // Group signals by file, keeping first-appearance order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in header.signals.iter().enumerate() {
            if !groups.contains_key(&s.file_name) {
                order.push(s.file_name.clone());
            }
            groups.entry(s.file_name.clone()).or_default().push(i);
        }
        let mut files = Vec::with_capacity(order.len());
        let mut n_frames_min: Option<usize> = None;
        for file in &order {
            let idx = &groups[file];
            let path = dir.join(file);
            if !inside_dir(file) {
                return Err(WfdbError::Unsupported {
                    path,
                    what: format!("signal file {file:?} outside the record's directory"),
                });
            }
            let first = &header.signals[idx[0]];
            let format = first.format;
            if let Some(&bad) = idx.iter().find(|&&i| header.signals[i].format != format) {
                return Err(WfdbError::Unsupported {
                    path,
                    what: format!(
                        "signals {} and {bad} share the file with different formats",
                        idx[0]
                    ),
                });
            }
            if format == 0 {
                continue;
            }
            if matches!(format, 508 | 516 | 524) {
                return Err(WfdbError::Unsupported {
                    path,
                    what: format!("FLAC signal format {format}"),
                });
            }
            let io = |error| WfdbError::Io {
                path: path.clone(),
                error,
            };
            let (mut bytes, len) = open(&path).map_err(io)?;
            let mut offset = first.byte_offset;
            if offset == 0 && file.to_ascii_lowercase().ends_with(".mat") {
                let mut head = Vec::with_capacity(MAT4_HEADER);
                (&mut bytes)
                    .take(MAT4_HEADER as u64)
                    .read_to_end(&mut head)
                    .map_err(io)?;
                offset = mat4_data_offset(&head, len, &path)?;
                skip(&mut bytes, offset - MAT4_HEADER as u64).map_err(io)?;
                for &i in idx {
                    header.signals[i].byte_offset = offset;
                }
            } else {
                if offset > len {
                    return Err(WfdbError::Signal {
                        path,
                        msg: format!("byte offset {offset} beyond the end of the file"),
                    });
                }
                skip(&mut bytes, offset).map_err(io)?;
            }
            // Checked: two signals of 2^63 samples per frame must not wrap to a frame of
            // 0 samples (a division by zero below).
            let frame = idx
                .iter()
                .try_fold(0usize, |a, &i| {
                    a.checked_add(header.signals[i].samples_per_frame)
                })
                .ok_or_else(|| WfdbError::Signal {
                    path: path.clone(),
                    msg: "samples per frame of the file's signals add up past the address space"
                        .into(),
                })?;
            let body = usize::try_from(len - offset).unwrap_or(usize::MAX);
            let (Some(avail), Some(group)) = (samples_in_bytes(format, body), group(format)) else {
                return Err(WfdbError::Unsupported {
                    path,
                    what: format!("signal format {format}"),
                });
            };
            let n_frames = match header.n_samples {
                Some(n) => {
                    if avail / frame < n {
                        return Err(WfdbError::Signal {
                            path,
                            msg: format!("holds {} frames, header says {n}", avail / frame),
                        });
                    }
                    n
                }
                None => avail / frame,
            };
            n_frames_min = Some(n_frames_min.map_or(n_frames, |m: usize| m.min(n_frames)));
            files.push(SignalFile {
                signals: idx
                    .iter()
                    .map(|&i| (i, header.signals[i].samples_per_frame))
                    .collect(),
                level: idx.iter().map(|&i| header.signals[i].init_value).collect(),
                path,
                bytes,
                format,
                group,
                frame,
                n_frames,
                read: 0,
                carry: Vec::new(),
                buf: Vec::new(),
            });
        }
        let n_frames = header.n_samples.or(n_frames_min).unwrap_or(0);
        Ok(Self {
            header,
            files,
            n_frames,
            read: 0,
        })
    }

    /// The record's header (for a `.mat` signal file, with the data's byte offset
    /// read from its MAT header).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Frames of the record: the header's count, or the shortest signal file's.
    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    /// The next frames of the record: up to `max` frames of every signal, one vector
    /// per signal in header order (a signal of several samples per frame gives that
    /// many per frame; one stored in no file, format 0, none); `None` once the
    /// record's frames are all read, and at once when no signal is stored in a file
    /// (its frames hold nothing to read, however many the header counts).
    ///
    /// # Errors
    /// When a signal file cannot be read, or ends before the frames it held when it
    /// was opened. The reader then reads no further (its files are no longer in
    /// step): every later call gives `None`.
    pub fn read_frames(&mut self, max: usize) -> Result<Option<Vec<Vec<i32>>>, WfdbError> {
        let n = max.min(self.n_frames - self.read);
        if n == 0 || self.files.is_empty() {
            return Ok(None);
        }
        let mut out = vec![Vec::new(); self.header.signals.len()];
        for file in &mut self.files {
            let block = file.read(n).inspect_err(|_| self.n_frames = self.read)?;
            for (&(i, _), v) in file.signals.iter().zip(block) {
                out[i] = v;
            }
        }
        self.read += n;
        Ok(Some(out))
    }

    /// The rest of the record's frames, as a record: every signal up to the record's
    /// frame count ([`SignalReader::n_frames`]).
    ///
    /// # Errors
    /// As [`SignalReader::read_frames`].
    pub fn read_rest(mut self) -> Result<Record, WfdbError> {
        let samples = self
            .read_frames(usize::MAX)?
            .unwrap_or_else(|| vec![Vec::new(); self.header.signals.len()]);
        Ok(self.record(samples))
    }

    /// The record of the header and these samples.
    fn record(self, samples: Vec<Vec<i32>>) -> Record {
        let Header {
            name,
            fs,
            signals,
            comments,
            ..
        } = self.header;
        Record {
            name,
            fs,
            n_samples: self.n_frames,
            signals,
            samples,
            comments,
        }
    }

    /// The whole record, each signal file read to its own end (when the header gives
    /// no frame count, files may hold different numbers of frames).
    fn into_record(mut self) -> Result<Record, WfdbError> {
        let mut samples: Vec<Vec<i32>> = vec![Vec::new(); self.header.signals.len()];
        for file in &mut self.files {
            for &(i, spf) in &file.signals {
                samples[i].reserve_exact(file.n_frames.saturating_mul(spf));
            }
            while file.read < file.n_frames {
                let block = file.read(1 << 16)?;
                for ((i, _), v) in file.signals.iter().zip(block) {
                    samples[*i].extend_from_slice(&v);
                }
            }
        }
        Ok(self.record(samples))
    }
}

impl SignalFile {
    /// The file's next `frames` frames (at most those left), one vector per signal of
    /// the file.
    fn read(&mut self, frames: usize) -> Result<Vec<Vec<i32>>, WfdbError> {
        let frames = frames.min(self.n_frames - self.read);
        let want = frames * self.frame;
        let (group_samples, group_bytes) = self.group;
        while self.carry.len() < want {
            let groups = (want - self.carry.len()).div_ceil(group_samples);
            self.buf.clear();
            (&mut self.bytes)
                .take((groups * group_bytes) as u64)
                .read_to_end(&mut self.buf)
                .map_err(|error| WfdbError::Io {
                    path: self.path.clone(),
                    error,
                })?;
            let got = self.buf.len();
            let n = samples_in_bytes(self.format, got)
                .unwrap_or(0)
                .min(groups * group_samples);
            if n == 0 {
                return Err(WfdbError::Signal {
                    path: self.path.clone(),
                    msg: format!(
                        "ends before frame {}: it held {} frames when it was opened",
                        self.read + frames,
                        self.n_frames
                    ),
                });
            }
            self.carry.extend(decode(self.format, &self.buf[..got], n));
        }
        let mut outs: Vec<Vec<i32>> = self
            .signals
            .iter()
            .map(|&(_, spf)| Vec::with_capacity(frames * spf))
            .collect();
        // Demultiplex.
        for frame in self.carry[..want].chunks_exact(self.frame) {
            let mut pos = 0;
            for (out, &(_, spf)) in outs.iter_mut().zip(&self.signals) {
                out.extend_from_slice(&frame[pos..pos + spf]);
                pos += spf;
            }
        }
        self.carry.drain(..want);
        if self.format == 8 {
            for (out, level) in outs.iter_mut().zip(&mut self.level) {
                for v in out.iter_mut() {
                    *level = level.wrapping_add(*v);
                    *v = *level;
                }
            }
        }
        self.read += frames;
        Ok(outs)
    }
}

/// Skips `n` bytes (fewer if the bytes end first).
fn skip(bytes: &mut ByteSource, n: u64) -> std::io::Result<()> {
    std::io::copy(&mut bytes.take(n), &mut std::io::sink()).map(|_| ())
}

/// True when a signal file name stays inside the header's directory: relative, and
/// without `..` (WFDB names are plain file names, sometimes in a subdirectory).
fn inside_dir(file: &str) -> bool {
    use std::path::Component;
    Path::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Bytes of a MATLAB v4 matrix header before the matrix's name.
const MAT4_HEADER: usize = 20;

/// Byte offset of the data of a MATLAB v4 file holding one int16 matrix, from the
/// file's first [`MAT4_HEADER`] bytes `head` and its length `len`.
fn mat4_data_offset(head: &[u8], len: u64, path: &Path) -> Result<u64, WfdbError> {
    let bad = |msg: &str| WfdbError::Signal {
        path: path.to_path_buf(),
        msg: format!("MAT v4 header: {msg}"),
    };
    if head.len() < MAT4_HEADER {
        return Err(bad("file shorter than 20 bytes"));
    }
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let ty = word(0);
    if ty >= 10000 {
        return Err(bad("not a little-endian MAT v4 file"));
    }
    if (ty / 10) % 10 != 3 {
        return Err(bad("data type is not int16"));
    }
    let off = MAT4_HEADER as u64 + u64::from(word(16));
    if off > len {
        return Err(bad("name runs past the end of the file"));
    }
    Ok(off)
}

/// Samples and bytes of a format's smallest whole group: 212 packs two samples in
/// three bytes, 310 and 311 three in four, the others one sample in whole bytes
/// (`None`: unknown format).
fn group(format: u32) -> Option<(usize, usize)> {
    Some(match format {
        8 | 80 => (1, 1),
        16 | 61 | 160 => (1, 2),
        24 => (1, 3),
        32 => (1, 4),
        212 => (2, 3),
        310 | 311 => (3, 4),
        _ => return None,
    })
}

/// How many samples of `format` fit in `n` bytes (`None`: unknown format).
fn samples_in_bytes(format: u32, n: usize) -> Option<usize> {
    Some(match format {
        8 | 80 => n,
        16 | 61 | 160 => n / 2,
        24 => n / 3,
        32 => n / 4,
        212 => n / 3 * 2 + usize::from(n % 3 >= 2),
        310 => {
            n / 4 * 3
                + match n % 4 {
                    0 | 1 => 0,
                    2 | 3 => 1,
                    _ => 0,
                }
        }
        311 => {
            n / 4 * 3
                + match n % 4 {
                    0 | 1 => 0,
                    2 => 1,
                    _ => 2,
                }
        }
        _ => return None,
    })
}

fn sext(v: i32, bits: u32) -> i32 {
    let s = 32 - bits;
    (v << s) >> s
}

/// Decodes the first `count` samples of a byte stream. Callers guarantee the bytes
/// hold at least `count` samples (see [`samples_in_bytes`]); missing bytes read as 0.
fn decode(format: u32, b: &[u8], count: usize) -> Vec<i32> {
    let byte = |i: usize| i32::from(b.get(i).copied().unwrap_or(0));
    let mut out = Vec::with_capacity(count);
    match format {
        8 => out.extend((0..count).map(|i| sext(byte(i), 8))),
        80 => out.extend((0..count).map(|i| byte(i) - 128)),
        16 => out.extend((0..count).map(|i| sext(byte(2 * i) | byte(2 * i + 1) << 8, 16))),
        61 => out.extend((0..count).map(|i| sext(byte(2 * i) << 8 | byte(2 * i + 1), 16))),
        160 => out.extend((0..count).map(|i| (byte(2 * i) | byte(2 * i + 1) << 8) - 32768)),
        24 => out.extend((0..count).map(|i| {
            sext(
                byte(3 * i) | byte(3 * i + 1) << 8 | byte(3 * i + 2) << 16,
                24,
            )
        })),
        32 => out.extend((0..count).map(|i| {
            (byte(4 * i) | byte(4 * i + 1) << 8 | byte(4 * i + 2) << 16) | (byte(4 * i + 3) << 24)
        })),
        212 => {
            for i in 0..count {
                let p = 3 * (i / 2);
                let v = if i % 2 == 0 {
                    byte(p) | (byte(p + 1) & 0x0f) << 8
                } else {
                    byte(p + 2) | (byte(p + 1) & 0xf0) << 4
                };
                out.push(sext(v, 12));
            }
        }
        310 => {
            for i in 0..count {
                let p = 4 * (i / 3);
                let w0 = byte(p) | byte(p + 1) << 8;
                let w1 = byte(p + 2) | byte(p + 3) << 8;
                let v = match i % 3 {
                    0 => (w0 >> 1) & 0x3ff,
                    1 => (w1 >> 1) & 0x3ff,
                    _ => ((w0 >> 11) & 0x1f) | ((w1 >> 11) & 0x1f) << 5,
                };
                out.push(sext(v, 10));
            }
        }
        311 => {
            for i in 0..count {
                let p = 4 * (i / 3);
                let w = byte(p) | byte(p + 1) << 8 | byte(p + 2) << 16 | byte(p + 3) << 24;
                let v = (w >> (10 * (i % 3))) & 0x3ff;
                out.push(sext(v, 10));
            }
        }
        _ => out.resize(count, 0),
    }
    out
}

/// One annotation of an MIT-format annotation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (frame number) it refers to.
    pub sample: u64,
    /// WFDB annotation code (`anntyp`, 1 = NORMAL …).
    pub code: u8,
    /// The code's mnemonic (`N`, `V`, `A`, `+`, `~` …; `' '` for codes without one).
    pub symbol: char,
    /// Subtype (`subtyp`), 0 unless given.
    pub subtype: i8,
    /// Channel (`chan`), persists until changed.
    pub chan: u8,
    /// Annotator number (`num`), persists until changed.
    pub num: i8,
    /// Auxiliary string (e.g. rhythm `(AFIB`), trailing NULs removed.
    pub aux: Option<String>,
}

const SYMBOLS: [char; 50] = [
    ' ', 'N', 'L', 'R', 'a', 'V', 'F', 'J', 'A', 'S', // 0-9
    'E', 'j', '/', 'Q', '~', ' ', '|', ' ', 's', 'T', // 10-19
    '*', 'D', '"', '=', 'p', 'B', '^', 't', '+', 'u', // 20-29
    '?', '!', '[', ']', 'e', 'n', '@', 'x', 'f', '(', // 30-39
    ')', 'r', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', // 40-49
];

/// The mnemonic of an annotation code (`' '` when it has none).
pub fn symbol(code: u8) -> char {
    SYMBOLS.get(usize::from(code)).copied().unwrap_or(' ')
}

/// True for beat annotations, as PhysioNet `bxb` counts them: N L R B A a J S V r F e
/// j n E / f Q ?. Rhythm changes (`+`), noise (`~`), artifacts (`|`), comments (`"`)
/// and the other non-beat codes are not beats.
pub fn is_beat(code: u8) -> bool {
    matches!(
        code,
        1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 25 | 30 | 34 | 35 | 38 | 41
    )
}

const SKIP: u16 = 59;
const NUM: u16 = 60;
const SUB: u16 = 61;
const CHN: u16 = 62;
const AUX: u16 = 63;

/// Sample indices of the beat annotations ([`is_beat`]) of a record.
pub fn beat_samples(ann: &[Annotation]) -> Vec<u64> {
    ann.iter()
        .filter(|a| is_beat(a.code))
        .map(|a| a.sample)
        .collect()
}

/// Ventricular flutter/fibrillation episodes (`[` … `]`, inclusive sample ranges);
/// an episode still open at the end of the annotations runs to `u64::MAX`.
pub fn vf_episodes(ann: &[Annotation]) -> Vec<(u64, u64)> {
    let mut vf = Vec::new();
    let mut on = None;
    for a in ann {
        match a.symbol {
            '[' => on = Some(a.sample),
            ']' => {
                if let Some(s) = on.take() {
                    vf.push((s, a.sample));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = on {
        vf.push((s, u64::MAX));
    }
    vf
}

/// Reads an MIT-format annotation file (`path` is the full file name, e.g.
/// `…/mitdb/100.atr`).
///
/// # Errors
/// [`WfdbError::Io`] or [`WfdbError::Annotation`] (truncated SKIP or AUX, modifier
/// before any annotation, time overflow).
pub fn read_annotations(path: &Path) -> Result<Vec<Annotation>, WfdbError> {
    let bytes = read_bytes(path)?;
    parse_annotations(&bytes, path)
}

/// Parses the bytes of an MIT-format annotation file; `path` is for error messages.
///
/// # Errors
/// [`WfdbError::Annotation`] naming the byte offset of the problem.
pub fn parse_annotations(b: &[u8], path: &Path) -> Result<Vec<Annotation>, WfdbError> {
    let err = |offset: usize, msg: &str| WfdbError::Annotation {
        path: path.to_path_buf(),
        offset,
        msg: msg.to_string(),
    };
    let word = |i: usize| -> Option<u16> { Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let mut out: Vec<Annotation> = Vec::new();
    let mut time: i64 = 0;
    let mut num: i8 = 0;
    let mut chan: u8 = 0;
    let mut i = 0usize;
    while i + 1 < b.len() {
        let Some(w) = word(i) else { break };
        let a = w >> 10;
        let v = w & 0x3ff;
        if w == 0 {
            break;
        }
        match a {
            SKIP => {
                let (Some(hi), Some(lo)) = (word(i + 2), word(i + 4)) else {
                    return Err(err(i, "truncated SKIP"));
                };
                let inc = ((u32::from(hi) << 16) | u32::from(lo)) as i32;
                time = time
                    .checked_add(i64::from(inc))
                    .ok_or_else(|| err(i, "annotation time overflow"))?;
                i += 6;
            }
            NUM | SUB | CHN | AUX => {
                let Some(last) = out.last_mut() else {
                    return Err(err(i, "modifier before any annotation"));
                };
                match a {
                    NUM => {
                        num = v as i8;
                        last.num = num;
                        i += 2;
                    }
                    SUB => {
                        last.subtype = v as i8;
                        i += 2;
                    }
                    CHN => {
                        chan = v as u8;
                        last.chan = chan;
                        i += 2;
                    }
                    _ => {
                        let n = usize::from(v);
                        let s = b
                            .get(i + 2..i + 2 + n)
                            .ok_or_else(|| err(i, "truncated AUX string"))?;
                        let s = String::from_utf8_lossy(s)
                            .trim_end_matches('\0')
                            .to_string();
                        last.aux = Some(s);
                        i += 2 + n + (n & 1);
                    }
                }
            }
            _ => {
                time = time
                    .checked_add(i64::from(v))
                    .ok_or_else(|| err(i, "annotation time overflow"))?;
                let sample = u64::try_from(time).map_err(|_| err(i, "negative annotation time"))?;
                let code = a as u8;
                out.push(Annotation {
                    sample,
                    code,
                    symbol: symbol(code),
                    subtype: 0,
                    chan,
                    num,
                    aux: None,
                });
                i += 2;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_its_io_error_once() {
        let dir = std::env::temp_dir().join(format!("wfdb-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("r.hea"),
            "r 1 250 10\nr.dat 16 200 12 0 0 0 0 II\n",
        )
        .unwrap();
        let e = read_record(&dir.join("r")).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        let shown = e.to_string();
        assert!(shown.contains("r.dat: "), "{shown}");
        // The reason is in the message; a report of the error's chain adds nothing.
        assert!(std::error::Error::source(&e).is_none());
        let reason = std::fs::read(dir.join("r.dat")).unwrap_err().to_string();
        assert_eq!(shown.matches(&reason).count(), 1, "{shown}");
    }

    fn data_dir() -> Option<PathBuf> {
        if let Ok(d) = std::env::var("CARDIOSTREAM_DATA") {
            let p = PathBuf::from(d);
            if p.is_dir() {
                return Some(p);
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/unpack");
        if !script.exists() {
            return None;
        }
        let out = std::process::Command::new(&script).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8_lossy(&out.stdout);
        let p = PathBuf::from(s.lines().last()?.trim());
        p.is_dir().then_some(p)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wfdb-test-{}-{name}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn parses_header_fields_and_defaults() {
        let h = parse_header(
            "rec 2 360 100\n# a comment\nrec.dat 212 200(10)/mV 11 1024 995 -22131 0 MLII\nrec.dat 212 0 11 1024 1011 20052\n",
            Path::new("rec.hea"),
        )
        .unwrap();
        assert_eq!(h.name, "rec");
        assert_eq!(h.fs, 360.0);
        assert_eq!(h.n_samples, Some(100));
        assert_eq!(h.comments, vec!["a comment"]);
        let s = &h.signals[0];
        assert_eq!(
            (s.format, s.gain, s.baseline, s.adc_zero),
            (212, 200.0, 10, 1024)
        );
        assert_eq!((s.init_value, s.checksum), (995, Some(-22131)));
        assert_eq!(s.description, "MLII");
        let s = &h.signals[1];
        assert_eq!((s.gain, s.baseline, s.units.as_str()), (200.0, 1024, "mV"));
        assert_eq!(s.description, "");
        let h = parse_header("x 1 300\nx.mat 16x2:3+24 1000/uV 16 0 5\n", Path::new("x")).unwrap();
        let s = &h.signals[0];
        assert_eq!((s.samples_per_frame, s.skew, s.byte_offset), (2, 3, 24));
        assert_eq!(s.units, "uV");
        assert_eq!(h.n_samples, None);
    }

    #[test]
    fn rejects_malformed_headers() {
        let p = Path::new("bad.hea");
        for text in [
            "",
            "rec\n",
            "rec two 360\n",
            "rec 2 360 10\nrec.dat 212 200 11 0 0 0 0 x\n",
            "rec 1 abc\nrec.dat 16\n",
            "rec 1 360\nrec.dat sixteen\n",
            "rec 1 360\nrec.dat 16 2x0/mV\n",
            "rec/2 1 360\n",
        ] {
            let e = parse_header(text, p);
            assert!(e.is_err(), "{text:?} parsed");
            assert!(e.unwrap_err().to_string().contains("bad.hea"));
        }
    }

    #[test]
    fn reads_212_and_16_fixtures() {
        let d = tmp("fmt");
        // Format 212, two signals, 2 frames: (1, -1), (2047, -2048).
        let s = [1i32, -1, 2047, -2048];
        let mut bytes = Vec::new();
        for p in s.chunks(2) {
            let (a, b) = (p[0] & 0xfff, p[1] & 0xfff);
            bytes.extend([
                (a & 0xff) as u8,
                ((a >> 8) | ((b >> 8) << 4)) as u8,
                (b & 0xff) as u8,
            ]);
        }
        fs::write(d.join("r.dat"), &bytes).unwrap();
        fs::write(
            d.join("r.hea"),
            "r 2 360 2\nr.dat 212 100(1)/mV 12 0 1 2048 0 A\nr.dat 212 200 12 0 -1 -2049 0 B\n",
        )
        .unwrap();
        let r = read_record(&d.join("r")).unwrap();
        assert_eq!(r.samples, vec![vec![1, 2047], vec![-1, -2048]]);
        assert!(r.checksum_ok(0) && r.checksum_ok(1));
        assert_eq!(r.physical(0)[0], 0.0);
        assert_eq!(r.physical(0)[1], 20.46);
        assert!(r.physical(1)[1].is_nan());
        // Format 16 in a MAT v4 file without explicit offset.
        let mut m = Vec::new();
        for w in [30u32, 1, 3, 0, 4] {
            m.extend(w.to_le_bytes());
        }
        m.extend(b"val\0");
        for v in [100i16, -200, 300] {
            m.extend(v.to_le_bytes());
        }
        fs::write(d.join("m.mat"), &m).unwrap();
        fs::write(
            d.join("m.hea"),
            "m 1 300 3\nm.mat 16 1000/mV 16 0 100 0 0 ECG\n",
        )
        .unwrap();
        let r = read_record(&d.join("m")).unwrap();
        assert_eq!(r.samples[0], vec![100, -200, 300]);
        assert_eq!(r.signals[0].byte_offset, 24);
        assert_eq!(r.physical(0), vec![0.1, -0.2, 0.3]);
        // Too short a file is an error naming it.
        fs::write(d.join("s.hea"), "s 1 300 10\nr.dat 16\n").unwrap();
        let e = read_record(&d.join("s")).unwrap_err().to_string();
        assert!(e.contains("r.dat") && e.contains("header says 10"), "{e}");
        let e = read_record(&d.join("nope")).unwrap_err().to_string();
        assert!(e.contains("nope.hea"), "{e}");
        fs::remove_dir_all(&d).ok();
    }

    fn ann_word(a: u16, i: u16) -> [u8; 2] {
        ((a << 10) | (i & 0x3ff)).to_le_bytes()
    }

    #[test]
    fn parses_annotation_bytes() {
        let mut b = Vec::new();
        b.extend(ann_word(28, 18)); // '+' at 18
        b.extend(ann_word(63, 5)); // AUX "(AFIB" (odd length -> pad)
        b.extend(b"(AFIB\0");
        b.extend(ann_word(1, 100)); // N at 118
        b.extend(ann_word(62, 1)); // CHN 1
        b.extend(ann_word(59, 0)); // SKIP 70000
        b.extend(1u16.to_le_bytes());
        b.extend(((70000u32 - 65536) as u16).to_le_bytes());
        b.extend(ann_word(5, 2)); // V at 118 + 70000 + 2
        b.extend(ann_word(61, 3)); // SUB 3
        b.extend(ann_word(14, 10)); // ~
        b.extend([0, 0]);
        let a = parse_annotations(&b, Path::new("t.atr")).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(
            (a[0].sample, a[0].symbol, a[0].aux.as_deref()),
            (18, '+', Some("(AFIB"))
        );
        assert_eq!((a[1].sample, a[1].symbol, a[1].chan), (118, 'N', 1));
        assert_eq!((a[2].sample, a[2].symbol, a[2].subtype), (70120, 'V', 3));
        assert_eq!((a[3].symbol, a[3].chan, a[3].subtype), ('~', 1, 0));
        assert!(is_beat(a[1].code) && is_beat(a[2].code));
        assert!(!is_beat(a[0].code) && !is_beat(a[3].code));
        // Malformed: truncated AUX, modifier first, truncated SKIP.
        let mut t = ann_word(1, 1).to_vec();
        t.extend(ann_word(63, 10));
        t.extend(b"ab");
        assert!(parse_annotations(&t, Path::new("t.atr")).is_err());
        assert!(parse_annotations(&ann_word(61, 1), Path::new("t.atr")).is_err());
        let mut t = ann_word(59, 0).to_vec();
        t.push(1);
        assert!(parse_annotations(&t, Path::new("t.atr")).is_err());
        assert!(parse_annotations(&[], Path::new("t.atr"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn beat_codes() {
        let beats: String = (0..=60u8).filter(|&c| is_beat(c)).map(symbol).collect();
        let mut v: Vec<char> = beats.chars().collect();
        v.sort_unstable();
        let mut want: Vec<char> = "NLRBAaJSVrFejnE/fQ?".chars().collect();
        want.sort_unstable();
        assert_eq!(v, want);
    }

    #[test]
    fn fuzzed_inputs_do_not_panic() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..2000 {
            let n = (x % 64) as usize;
            let mut b = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let _ = parse_annotations(&b, Path::new("f.atr"));
            let _ = parse_header(&String::from_utf8_lossy(&b), Path::new("f.hea"));
        }
    }

    #[test]
    fn mitdb_record_and_annotations() {
        let Some(dir) = data_dir() else {
            println!("skipping: shared ECG data not found (set CARDIOSTREAM_DATA or provide ../shared/data/unpack)");
            return;
        };
        // Record 100 is not in the shared subset; 101 is.
        let rec = dir.join("mitdb/101");
        if !path_with_suffix(&rec, ".hea").exists() {
            println!("skipping: {} absent", rec.display());
            return;
        }
        let r = read_record(&rec).unwrap();
        assert_eq!((r.fs, r.n_samples, r.signals.len()), (360.0, 650_000, 2));
        assert_eq!(r.samples[0].len(), 650_000);
        assert_eq!(r.signals[0].description, "MLII");
        assert_eq!(r.samples[0][0], r.signals[0].init_value);
        assert_eq!(r.samples[1][0], r.signals[1].init_value);
        assert!(r.checksum_ok(0) && r.checksum_ok(1));
        let mv = r.physical(0);
        assert!((mv[0] - (955.0 - 1024.0) / 200.0).abs() < 1e-6);
        let a = read_annotations(&dir.join("mitdb/101.atr")).unwrap();
        assert_eq!(a[0].symbol, '+');
        assert_eq!(a[0].aux.as_deref(), Some("(N"));
        let beats: Vec<&Annotation> = a.iter().filter(|x| is_beat(x.code)).collect();
        assert_eq!(beats[0].symbol, 'N');
        assert_eq!(beats[0].sample, 83);
        assert!(beats.len() > 1800 && beats.len() < 1900, "{}", beats.len());
        assert!(beats.windows(2).all(|w| w[0].sample <= w[1].sample));
    }

    #[test]
    fn format_fixtures_match_checksums() {
        let Some(dir) = data_dir() else {
            println!("skipping: shared ECG data not found (set CARDIOSTREAM_DATA or provide ../shared/data/unpack)");
            return;
        };
        let f = dir.join("wfdb-formats");
        for name in [
            "binformats",
            "310derive",
            "311derive",
            "3000003_0003",
            "test01_00s",
            "a103l",
            "p10143",
            "03700181",
        ] {
            let r = read_record(&f.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Read a block at a time, the same samples.
            for block in [1, 250, 4099] {
                let blocks = SignalReader::open(&f.join(name)).unwrap();
                assert_eq!(blocks.n_frames(), r.n_samples, "{name}");
                assert_eq!(
                    in_blocks(blocks, block),
                    r.samples,
                    "{name}, blocks of {block}"
                );
            }
            for (i, s) in r.signals.iter().enumerate() {
                assert!(
                    r.checksum_ok(i),
                    "{name} signal {i} ({}) checksum",
                    s.format
                );
                assert_eq!(
                    r.samples[i].first(),
                    Some(&s.init_value),
                    "{name} signal {i} initval"
                );
            }
        }
        let r = read_record(&f.join("a103l")).unwrap();
        assert_eq!(r.signals[0].byte_offset, 24);
        assert_eq!(r.samples[0].len(), 82_500);
        let a = read_annotations(&f.join("1003.atr")).unwrap();
        assert!(!a.is_empty());
        assert!(read_record(&f.join("flacformats")).is_err());
    }

    /// The frames of a record read `block` frames at a time, one vector per signal.
    fn in_blocks(mut r: SignalReader, block: usize) -> Vec<Vec<i32>> {
        let mut out = vec![Vec::new(); r.header().signals.len()];
        while let Some(b) = r.read_frames(block).unwrap() {
            for (o, v) in out.iter_mut().zip(b) {
                o.extend(v);
            }
        }
        out
    }

    #[test]
    fn a_record_with_no_stored_signal_has_no_frames_to_read() {
        // Found by the wfdb_record campaign: 2e9 frames of no signal at all, or of
        // signals stored in no file, are not 2e9 empty blocks.
        for header in [
            "r 0 8 2000000000\n",
            "r 1 250 2000000000\nr.dat 0 200 12 0 0 0 0 II\n",
        ] {
            let mut r = SignalReader::open_with(Path::new("r"), |_| Ok(header.as_bytes().to_vec()))
                .unwrap();
            assert_eq!(r.n_frames(), 2_000_000_000);
            assert!(r.read_frames(3).unwrap().is_none());
        }
    }

    #[test]
    fn blocks_of_any_size_read_what_the_whole_record_holds() {
        // Pseudo-random bytes as the signal file of every format: blocks that end
        // inside a packed group (212, 310, 311), first differences that add up across
        // blocks (8), two samples per frame, and a frame count the file's length gives.
        let mut x = 0x2545_f491_u32;
        let bytes: Vec<u8> = (0..1201)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for format in [8, 16, 24, 32, 61, 80, 160, 212, 310, 311] {
            for (header, frames) in [
                (format!("r 2 250\nr.dat {format} 200 12 0 5 0 0 a\nr.dat {format} 200 12 0 -3 0 0 b\n"), None),
                (format!("r 2 250 100\nr.dat {format}x2 200 12 0 7 0 0 a\nr.dat {format} 200 12 0 0 0 0 b\n"), Some(100)),
            ] {
                let files = |p: &Path| -> std::io::Result<Vec<u8>> {
                    Ok(if p.extension().is_some_and(|e| e == "hea") {
                        header.clone().into_bytes()
                    } else {
                        bytes.clone()
                    })
                };
                let whole = read_record_with(Path::new("r"), files).unwrap();
                if let Some(n) = frames {
                    assert_eq!(whole.n_samples, n, "format {format}");
                }
                assert!(whole.n_samples > 0, "format {format}");
                for block in [1, 2, 3, 7, 64, 1 << 20] {
                    let r = SignalReader::open_with(Path::new("r"), files).unwrap();
                    assert_eq!(r.n_frames(), whole.n_samples, "format {format}");
                    assert_eq!(in_blocks(r, block), whole.samples, "format {format}, blocks of {block}");
                }
            }
        }
    }

    #[test]
    fn cinc2017_record() {
        let Some(dir) = data_dir() else {
            println!("skipping: shared ECG data not found (set CARDIOSTREAM_DATA or provide ../shared/data/unpack)");
            return;
        };
        let rec = dir.join("cinc2017/A00002");
        if !path_with_suffix(&rec, ".hea").exists() {
            println!("skipping: {} absent", rec.display());
            return;
        }
        let r = read_record(&rec).unwrap();
        assert_eq!((r.fs, r.n_samples), (300.0, 9000));
        assert_eq!(r.samples[0][0], 128);
        let mv = r.physical(0);
        assert!((mv[0] - 0.128).abs() < 1e-6);
        assert!(mv.iter().all(|v| v.abs() < 10.0));
    }
}
