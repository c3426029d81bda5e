//! Streaming QRS detector, after Pan & Tompkins (1985) and Hamilton & Tompkins'
//! open-source detector (OSEA, 2002), generalised to any sampling rate.
//!
//! Stages, all linear-phase with integer delays so the QRS time is known exactly:
//! 1. low-pass: two cascaded 30 ms moving averages (first zero at 33 Hz);
//! 2. high-pass: the signal minus its 125 ms moving average (≈5 Hz corner), so
//!    1 + 2 form a ≈5–15 Hz band-pass;
//! 3. derivative over 10 ms, absolute value;
//! 4. 80 ms moving-window integration (MWI).
//!
//! Decision rules on MWI peaks: a peak is a local maximum followed by a fall to half
//! of it (or 95 ms); peaks within 200 ms of a bigger one are discarded (refractory);
//! a peak is a QRS when it exceeds `noise + f (qrs − noise)`, with `qrs` and
//! `noise` the medians of the last 8 QRS and noise peaks and `f` = 0.3125 in clean
//! signal. Baseline shifts are
//! rejected (the 10 ms derivative of the low-passed signal must swing both ways
//! within 150 ms around the peak, the smaller swing at least 1/8 of the larger, or
//! 1/30 for peaks of at least 0.3 × the median QRS peak, so that broad, nearly
//! monophasic ventricular complexes pass); a candidate within 360 ms of the previous QRS
//! with less than half its steepest slope is a T wave. When no QRS follows for
//! 1.5 × the median RR interval (at most 1.8 s), the largest noise peak that lies at
//! least 360 ms after the last QRS and exceeds 0.4 × the threshold is taken as a
//! missed beat (search-back). After 8 s without a QRS the thresholds restart from
//! the per-second maxima of the last 8 s. Detections are finally placed on the
//! largest deflection of the band-passed signal within ±80 ms (the R wave, or the
//! deepest wave of a QS complex).
//!
//! Noise (signal-quality aware, no added latency): the MWI *floor*, the median of
//! the minima of the last eight 250 ms blocks, stays near 0 in clean ECG (the MWI
//! falls back between beats) and rises with muscle or motion noise. The threshold
//! fraction grows with it, `f = 0.3125 + 5 (floor/qrs − 0.04)` within 0.3125–0.75
//! (before the first QRS, `qrs` is the learning period's largest MWI value, as for the
//! threshold itself, so that a stream which starts in noise starts with it raised).
//! When the floor exceeds 0.13 × the QRS level, a second stage checks early
//! candidates (RR below 0.6 × the median, peak below 1.5 × the typical QRS): they
//! must correlate at least 0.6 (within ±10 ms) with a template of the recent beats
//! (the band-passed signal ±50 ms around them, unit energy, averaged over about 8
//! beats; in noise only beats correlating ≥ 0.8 update it). Short bursts of
//! electrode motion leave the floor low but raise the median *rejected* peak: when it
//! is at least 0.15 × the QRS level, a candidate earlier than 0.7 × the median RR and
//! smaller than 0.7 × the QRS level is a noise peak.
//!
//! Start of a stream: the first 2 s (at most the latency) are a learning period.
//! Peaks are collected but not classified until its end; then the thresholds start
//! from the largest MWI value of the whole period and its peaks are classified in
//! order. Without it the first peak was compared with a threshold made of itself, so
//! any P or T wave (or the tail of a cut QRS) that opened a recording was taken as a
//! beat.
//!
//! End of a recording ([`QrsDetector::finish`]): the last sample is fed again for the
//! latency so that every beat is decided, and no beat is searched back whose due time
//! (1.5 × the median RR after the last QRS) lies past the recording's end: a recording
//! that stopped before the next beat was due has not missed it. Without this, the
//! flushed stretch went 1.5 RR without a beat and the largest noise peak after the last
//! QRS (a T wave, an artefact) became a beat at the very end.
//!
//! Latency: each beat is reported at most [`QrsDetector::latency_samples`] samples
//! after it occurs (≈2.05 s whatever the rate, e.g. 737 samples at 360 Hz; typical
//! beats come out after ≈0.6 s, beats recovered by search-back later). Beats come out
//! in increasing order.

use std::collections::VecDeque;

/// Threshold fraction between the noise and QRS peak levels.
const TH: f32 = 0.3125;
/// Peak buffers length.
const NBUF: usize = 8;
/// Search-back accepts the largest skipped peak above this fraction of the threshold.
const SB_FRAC: f32 = 0.4;
/// Baseline-shift check: smallest ratio between the derivative's two swings, 1 : BALANCE.
const BALANCE: f32 = 8.0;
/// The same for peaks above `STRONG` × the median QRS peak.
const BALANCE_STRONG: f32 = 30.0;
const STRONG: f32 = 0.3;
/// The threshold fraction grows with the MWI noise floor: `TH + FLOOR_GAIN ×
/// (floor / QRS − FLOOR_FREE)`, within `TH ..= TH_MAX`.
const FLOOR_GAIN: f32 = 5.0;
const FLOOR_FREE: f32 = 0.04;
const TH_MAX: f32 = 0.75;
/// Noisy signal: the MWI floor above this fraction of the typical QRS peak.
const NOISY_FLOOR: f32 = 0.13;
/// In noisy signal, a candidate earlier than `PREMATURE` × the median RR and smaller
/// than `PREMATURE_MAX` × the median QRS peak needs a template correlation of at
/// least `MIN_CORR`; only beats correlating at least `UPDATE_CORR` update the
/// template there.
const PREMATURE: f32 = 0.6;
const PREMATURE_MAX: f32 = 1.5;
const MIN_CORR: f32 = 0.6;
const UPDATE_CORR: f32 = 0.8;
/// Between bursts of noise: when the median rejected (noise) peak is at least
/// `NOISY_PEAKS` × the median QRS peak, a candidate earlier than `EARLY_RR` × the
/// median RR and smaller than `EARLY_MAX` × the median QRS peak is a noise peak.
const NOISY_PEAKS: f32 = 0.15;
const EARLY_RR: f32 = 0.7;
const EARLY_MAX: f32 = 0.7;
/// Template half-width (s) around the placed beat, and the lag searched (s).
const TPL_HALF_S: f64 = 0.05;
const TPL_LAG_S: f64 = 0.01;
/// Learning period at the start of a stream (s): no beat is decided before its end.
const LEARN_S: f64 = 2.0;
/// Smallest MWI value (mV per 10 ms) that can start timing a peak.
const MIN_PEAK: f32 = 1e-3;

#[derive(Debug, Clone)]
struct MovSum {
    buf: Vec<f32>,
    pos: usize,
    sum: f64,
    /// 1 / len: the mean is taken by a multiplication, not a division.
    inv: f64,
}

impl MovSum {
    fn new(len: usize) -> Self {
        let len = len.max(1);
        Self {
            buf: vec![0.0; len],
            pos: 0,
            sum: 0.0,
            inv: 1.0 / len as f64,
        }
    }

    fn fill(&mut self, x: f32) {
        self.buf.fill(x);
        self.sum = f64::from(x) * self.buf.len() as f64;
    }

    /// Pushes `x`, returns the mean of the last `len` values.
    fn push(&mut self, x: f32) -> f32 {
        self.sum += f64::from(x) - f64::from(self.buf[self.pos]);
        self.buf[self.pos] = x;
        self.pos = (self.pos + 1) % self.buf.len();
        (self.sum * self.inv) as f32
    }

    /// The value pushed `k` steps ago (0 = the last one), `k < len`.
    fn back(&self, k: usize) -> f32 {
        let n = self.buf.len();
        self.buf[(self.pos + n - 1 - (k % n)) % n]
    }
}

/// A ring of values indexed by absolute step number.
#[derive(Debug, Clone)]
struct Hist {
    data: Vec<f32>,
}

impl Hist {
    fn new(cap: usize) -> Self {
        Self {
            data: vec![0.0; cap.max(1)],
        }
    }

    fn set(&mut self, step: u64, v: f32) {
        let n = self.data.len() as u64;
        self.data[(step % n) as usize] = v;
    }

    fn get(&self, step: u64) -> f32 {
        let n = self.data.len() as u64;
        self.data[(step % n) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Peak {
    val: f32,
    /// Estimated QRS time in the raw signal's time base.
    loc: i64,
}

/// The median of one of the detector's peak buffers (at most `NBUF` values, sorted in
/// a stack copy: every classified peak reads several of them).
fn median(v: &VecDeque<f32>) -> f32 {
    debug_assert!(v.len() <= NBUF);
    let mut buf = [0.0f32; NBUF];
    let n = v.len().min(NBUF);
    for (b, &x) in buf.iter_mut().zip(v) {
        *b = x;
    }
    let s = &mut buf[..n];
    if s.is_empty() {
        return 0.0;
    }
    s.sort_unstable_by(f32::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

fn push_buf(b: &mut VecDeque<f32>, v: f32) {
    if b.len() == NBUF {
        b.pop_back();
    }
    b.push_front(v);
}

/// Streaming QRS detector for one lead. See the module documentation.
#[derive(Debug, Clone)]
pub struct QrsDetector {
    fs: f64,
    n: u64,
    // Durations in samples.
    ms80: i64,
    ms95: u32,
    ms100: i64,
    ms120: i64,
    ms150: i64,
    ms360: i64,
    pre_blank: u32,
    hold: i64,
    sb_cap: i64,
    sec: u64,
    latency: usize,
    // Filter stages.
    lp1: MovSum,
    lp2: MovSum,
    hp: MovSum,
    hp_center: usize,
    k: usize,
    bp_recent: MovSum,
    lp_recent: MovSum,
    mwi: MovSum,
    /// Delay of the band-passed signal, of the low-passed derivative and of the MWI.
    d_bp: i64,
    d_der: i64,
    d_mwi: i64,
    bp_hist: Hist,
    der_hist: Hist,
    // Peak finder.
    last_mwi: f32,
    pk_max: f32,
    pk_step: u64,
    since_max: u32,
    // Pre-blank hold.
    held: Option<Peak>,
    pre_cnt: u32,
    // Decision state.
    qrs: VecDeque<f32>,
    noise: VecDeque<f32>,
    rr: VecDeque<f32>,
    init_max: f32,
    last_qrs: Option<i64>,
    last_maxder: f32,
    sb: Option<Peak>,
    sb_der: f32,
    last_reset: i64,
    sec_max: VecDeque<f32>,
    cur_sec_max: f32,
    last_out: Option<u64>,
    /// Samples of the learning period: peaks are only collected, then classified
    /// at its end against thresholds learnt from all of it.
    learn: u64,
    /// Peaks declared during the learning period.
    learning: Vec<Peak>,
    /// QRS template: the band-passed signal around recent beats, mean-removed and
    /// scaled to unit energy, averaged exponentially.
    tpl: Vec<f32>,
    tpl_beats: u32,
    tpl_lag: i64,
    /// Scratch for one segment.
    seg: Vec<f32>,
    /// MWI noise floor: minima of 250 ms blocks, the last 8.
    blk_len: u32,
    blk_cnt: u32,
    blk_min: f32,
    mins: VecDeque<f32>,
    /// Where the recording ended (samples), once [`QrsDetector::finish`] was called.
    end: Option<i64>,
}

impl QrsDetector {
    /// A detector for a signal sampled at `fs` Hz (designed for 125–1000 Hz).
    pub fn new(fs: f64) -> QrsDetector {
        let fs = if fs.is_finite() && fs >= 50.0 {
            fs
        } else {
            250.0
        };
        let s = |sec: f64| (sec * fs).round().max(1.0) as usize;
        let l = s(0.030);
        let mut h = s(0.125);
        if h % 2 == 0 {
            h += 1;
        }
        let k = s(0.010);
        let w = s(0.080);
        let d_bp2 = 2 * (l as i64 - 1) + (h as i64 - 1); // twice the delay
        let d_bp = d_bp2 / 2;
        let d_der = ((2 * (l as i64 - 1) + k as i64) as f64 / 2.0).round() as i64;
        let d_mwi = ((d_bp2 + k as i64 + w as i64 - 1) as f64 / 2.0).round() as i64;
        let ms = |m: f64| s(m / 1000.0) as i64;
        let ms95 = ms(95.0) as u32;
        // Hold a declared peak 200 ms plus the longest declaration delay, so that a
        // bigger peak whose maximum lies within 200 ms of it always replaces it.
        let pre_blank = ms(200.0) as u32 + ms95;
        let hold = i64::from(pre_blank) + i64::from(ms95);
        let sb_cap = ms(1800.0);
        let ms80 = ms(80.0);
        let ms360 = ms(360.0);
        // Normal path: peak declared ≤ 95 ms after its maximum, held 200 ms, plus the
        // MWI delay and the ±80 ms placement. Search-back path: see `search_back`.
        let normal = d_mwi + i64::from(ms95) + 2 + i64::from(pre_blank) + ms80;
        let sb = d_mwi + sb_cap + hold + 2 - ms360 + ms80;
        let latency = normal.max(sb).max(1) as usize;
        // History of latency + 250 ms. Peaks classified on the normal path and
        // search-back peaks taken when first due are read within latency + 100 ms of
        // the newest sample (the slope check's -100..+120 ms; placement ±80 ms). Two
        // rarer reads reach further, and then skip what is no longer held (as they did
        // with the former 1 s margin, which did not cover them either): a search-back
        // peak taken later because the threshold fell after it was due (placed and
        // learnt into the template, then dropped as too old), and a peak at most
        // `MIN_PEAK` high, which has no 95 ms declaration timeout. The beats of every
        // shared record, clean and with the 15 noise mixtures, on both leads, were
        // identical with the former margin.
        let cap = latency + s(0.25);
        // Learn for 2 s, or less when the latency is shorter: a peak of the first
        // sample is classified when the learning ends, which must stay within it.
        let learn = (s(LEARN_S) as u64).min(latency as u64);
        let mut det = QrsDetector {
            fs,
            n: 0,
            ms80,
            ms95,
            ms100: ms(100.0),
            ms120: ms(120.0),
            ms150: ms(150.0),
            ms360,
            pre_blank,
            hold,
            sb_cap,
            sec: s(1.0) as u64,
            latency,
            lp1: MovSum::new(l),
            lp2: MovSum::new(l),
            hp: MovSum::new(h),
            hp_center: (h - 1) / 2,
            k,
            bp_recent: MovSum::new(k + 1),
            lp_recent: MovSum::new(k + 1),
            mwi: MovSum::new(w),
            d_bp,
            d_der,
            d_mwi,
            bp_hist: Hist::new(cap),
            der_hist: Hist::new(cap),
            last_mwi: 0.0,
            pk_max: 0.0,
            pk_step: 0,
            since_max: 0,
            held: None,
            pre_cnt: 0,
            qrs: VecDeque::with_capacity(NBUF),
            noise: VecDeque::with_capacity(NBUF),
            rr: VecDeque::with_capacity(NBUF),
            init_max: 0.0,
            last_qrs: None,
            last_maxder: 0.0,
            sb: None,
            sb_der: 0.0,
            last_reset: 0,
            sec_max: VecDeque::with_capacity(NBUF),
            cur_sec_max: 0.0,
            last_out: None,
            learn,
            learning: Vec::new(),
            tpl: vec![0.0; 2 * s(TPL_HALF_S) + 1],
            tpl_beats: 0,
            tpl_lag: s(TPL_LAG_S) as i64,
            seg: vec![0.0; 2 * s(TPL_HALF_S) + 1],
            blk_len: s(0.25) as u32,
            blk_cnt: 0,
            blk_min: f32::INFINITY,
            mins: VecDeque::with_capacity(NBUF),
            end: None,
        };
        det.rr.push_front(fs as f32);
        det
    }

    /// Sampling rate (Hz).
    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// The detector's own noise estimate: the median rejected (noise) peak of the MWI
    /// over the median QRS peak, 0 until beats are known. The early-noise rule engages
    /// from `NOISY_PEAKS` (0.15); on MIT-BIH lead 0 with baseline wander at 12 dB (near
    /// clean) its median over beats is 0.07, its 90th percentile 0.14. Read-only.
    pub fn noise_ratio(&self) -> f32 {
        let q = median(&self.qrs);
        if q > 0.0 {
            median(&self.noise) / q
        } else {
            0.0
        }
    }

    /// Samples pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Heap and inline bytes of this state (read-only accounting; no effect on beats).
    pub fn state_bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let movsums = [
            &self.lp1,
            &self.lp2,
            &self.hp,
            &self.bp_recent,
            &self.lp_recent,
            &self.mwi,
        ]
        .iter()
        .map(|m| m.buf.capacity())
        .sum::<usize>();
        let hists = self.bp_hist.data.capacity() + self.der_hist.data.capacity();
        let bufs = self.qrs.capacity()
            + self.noise.capacity()
            + self.rr.capacity()
            + self.sec_max.capacity();
        let learning = self.learning.capacity() * std::mem::size_of::<Peak>();
        let tpl = self.tpl.capacity() + self.seg.capacity();
        std::mem::size_of::<Self>() + f * (movsums + hists + bufs + tpl) + learning
    }

    /// Fixed upper bound of the delay between a beat's sample and the `push` call
    /// whose input contains the sample that many samples later: once sample `t` has
    /// been pushed, every beat at or before `t - latency_samples()` has been output.
    pub fn latency_samples(&self) -> usize {
        self.latency
    }

    /// Feeds raw samples (mV, one lead) and appends the absolute sample indices of
    /// newly detected beats to `out`, in increasing order.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<u64>) {
        for &v in x {
            self.step(v, out);
        }
    }

    /// Marks the end of a recording at the samples pushed so far: from then on no
    /// beat is searched back for whose due time lies past that end (the recording
    /// stopped before the beat was missed).
    pub(crate) fn mark_end(&mut self) {
        self.end.get_or_insert(self.n as i64);
    }

    /// The last sample pushed, as the detector took it (a non-finite one as the value
    /// before it), 0 before any: what [`QrsDetector::finish`] feeds again.
    pub(crate) fn last_sample(&self) -> f32 {
        self.lp1.back(0)
    }

    /// Ends a recording: feeds the last sample pushed (0 before any) again for the
    /// latency, so that every beat of the recording is decided, and appends those
    /// beats to `out`, without searching back for a beat that was not yet due when
    /// the recording stopped. Beats at or after the recording's end are the caller's
    /// to drop.
    pub fn finish(&mut self, out: &mut Vec<u64>) {
        self.mark_end();
        let last = self.last_sample();
        for _ in 0..=self.latency {
            self.step(last, out);
        }
    }

    /// The MWI noise floor (median of the last 8 quarter-second minima) relative to
    /// the typical QRS peak: near 0 in clean ECG, where the MWI falls back between
    /// beats; high in muscle or motion noise.
    fn floor_ratio(&self) -> f32 {
        let q = self.qrs_level();
        if q > 0.0 {
            median(&self.mins) / q
        } else {
            0.0
        }
    }

    /// The typical QRS peak: the median of the last QRS peaks, or before any, the
    /// largest MWI value of the learning period.
    fn qrs_level(&self) -> f32 {
        if self.qrs.is_empty() {
            self.init_max
        } else {
            median(&self.qrs)
        }
    }

    fn threshold(&self) -> f32 {
        let q = self.qrs_level();
        let nz = median(&self.noise);
        let th = (TH + FLOOR_GAIN * (self.floor_ratio() - FLOOR_FREE)).clamp(TH, TH_MAX);
        nz + th * (q - nz)
    }

    fn step(&mut self, x: f32, out: &mut Vec<u64>) {
        let x = if x.is_finite() { x } else { self.lp1.back(0) };
        if self.n == 0 {
            self.lp1.fill(x);
            self.lp2.fill(x);
            self.hp.fill(x);
            self.lp_recent.fill(x);
            self.bp_recent.fill(0.0);
        }
        let n = self.n;
        let a = self.lp1.push(x);
        let b = self.lp2.push(a);
        let _ = self.lp_recent.push(b);
        let der_lp = b - self.lp_recent.back(self.k);
        let mean = self.hp.push(b);
        let bp = self.hp.back(self.hp_center) - mean;
        let _ = self.bp_recent.push(bp);
        let d = bp - self.bp_recent.back(self.k);
        let m = self.mwi.push(d.abs());
        self.bp_hist.set(n, bp);
        self.der_hist.set(n, der_lp);
        self.n += 1;

        // MWI floor.
        self.blk_min = self.blk_min.min(m);
        self.blk_cnt += 1;
        if self.blk_cnt == self.blk_len {
            push_buf(&mut self.mins, self.blk_min);
            self.blk_cnt = 0;
            self.blk_min = f32::INFINITY;
        }
        // Background maxima for threshold (re)initialisation.
        self.init_max = self.init_max.max(m);
        self.cur_sec_max = self.cur_sec_max.max(m);
        if (n + 1).is_multiple_of(self.sec) {
            push_buf(&mut self.sec_max, self.cur_sec_max);
            self.cur_sec_max = 0.0;
        }

        // Peak finder on the MWI.
        let mut apk = None;
        if self.since_max > 0 {
            self.since_max += 1;
        }
        if m > self.last_mwi && m > self.pk_max {
            self.pk_max = m;
            self.pk_step = n;
            if m > MIN_PEAK {
                self.since_max = 1;
            }
        } else if m < 0.5 * self.pk_max || self.since_max > self.ms95 {
            apk = Some(Peak {
                val: self.pk_max,
                loc: self.pk_step as i64 - self.d_mwi,
            });
            self.pk_max = 0.0;
            self.since_max = 0;
        }
        self.last_mwi = m;

        // 200 ms hold: only the largest peak of any 200 ms stretch goes on.
        let mut new_peak = None;
        match (apk, self.pre_cnt) {
            (Some(p), 0) => {
                self.held = Some(p);
                self.pre_cnt = self.pre_blank;
            }
            (None, 0) => {}
            (None, _) => {
                self.pre_cnt -= 1;
                if self.pre_cnt == 0 {
                    new_peak = self.held.take();
                }
            }
            (Some(p), _) => {
                if self.held.is_none_or(|h| p.val > h.val) {
                    self.held = Some(p);
                    self.pre_cnt = self.pre_blank;
                } else {
                    self.pre_cnt -= 1;
                    if self.pre_cnt == 0 {
                        new_peak = self.held.take();
                    }
                }
            }
        }

        if let Some(p) = new_peak {
            if self.n <= self.learn {
                self.learning.push(p);
            } else {
                self.classify(p, out);
            }
        }
        if self.n == self.learn {
            // The thresholds start from the largest MWI value of the whole learning
            // period; its peaks are classified in order against them.
            for p in std::mem::take(&mut self.learning) {
                self.classify(p, out);
            }
        }
        self.search_back(out);
        self.maybe_reset();
    }

    /// Baseline-shift check around `loc`: returns the steepest slope when the
    /// low-passed derivative swings both ways within 150 ms, `None` otherwise.
    fn slope_check(&self, loc: i64, r: f32) -> Option<f32> {
        let (mut max, mut min) = (0.0f32, 0.0f32);
        let (mut tmax, mut tmin) = (0i64, 0i64);
        let newest = self.n as i64 - 1;
        for t in (loc - self.ms100)..(loc + self.ms120) {
            let step = t + self.d_der;
            if step < 0 || step > newest || newest - step >= self.bp_hist.data.len() as i64 {
                continue;
            }
            let v = self.der_hist.get(step as u64);
            if v > max {
                max = v;
                tmax = t;
            } else if v < min {
                min = v;
                tmin = t;
            }
        }
        let min = -min;
        (max > min / r && min > max / r && (tmax - tmin).abs() < self.ms150).then_some(max.max(min))
    }

    fn classify(&mut self, p: Peak, out: &mut Vec<u64>) {
        // Wide, nearly monophasic (ventricular) complexes fail the 1:8 balance of
        // the derivative; a peak of at least 0.3 of the typical QRS gets 1:30.
        let strong = p.val > STRONG * median(&self.qrs);
        let Some(maxder) = self.slope_check(p.loc, BALANCE).or_else(|| {
            strong
                .then(|| self.slope_check(p.loc, BALANCE_STRONG))
                .flatten()
        }) else {
            return;
        };
        let since = self.last_qrs.map(|l| p.loc - l);
        let t_limit = self.ms360.max((0.5 * median(&self.rr)) as i64);
        let t_wave = since.is_some_and(|s| s < t_limit) && maxder < 0.5 * self.last_maxder;
        if p.val > self.threshold()
            && !t_wave
            && !self.early_noise(&p, since)
            && self.verified(&p, since)
        {
            self.accept(p, maxder, out);
        } else {
            push_buf(&mut self.noise, p.val);
            if since.is_none_or(|s| s >= self.ms360) && self.sb.is_none_or(|s| p.val > s.val) {
                self.sb = Some(p);
                self.sb_der = maxder;
            }
        }
    }

    /// The sample of the largest band-passed deflection within ±80 ms of `loc`.
    fn place(&self, loc: i64) -> i64 {
        let newest = self.n as i64 - 1;
        let mut best = loc;
        let mut best_v = -1.0f32;
        for t in (loc - self.ms80)..=(loc + self.ms80) {
            let step = t + self.d_bp;
            if t < 0 || step > newest || newest - step >= self.bp_hist.data.len() as i64 {
                continue;
            }
            let v = self.bp_hist.get(step as u64).abs();
            if v > best_v {
                best_v = v;
                best = t;
            }
        }
        best
    }

    /// Copies the band-passed segment centred on `c` into `seg`, mean-removed and
    /// scaled to unit energy; false when it is not (or no longer) in the history.
    fn segment(&mut self, c: i64) -> bool {
        let half = (self.seg.len() / 2) as i64;
        let newest = self.n as i64 - 1;
        let (first, last) = (c - half + self.d_bp, c + half + self.d_bp);
        if first < 0 || last > newest || newest - first >= self.bp_hist.data.len() as i64 {
            return false;
        }
        let mut mean = 0.0f32;
        for (k, v) in self.seg.iter_mut().enumerate() {
            *v = self.bp_hist.get((first + k as i64) as u64);
            mean += *v;
        }
        mean /= self.seg.len() as f32;
        let mut e = 0.0f32;
        for v in &mut self.seg {
            *v -= mean;
            e += *v * *v;
        }
        if e <= 0.0 {
            return false;
        }
        let k = 1.0 / e.sqrt();
        for v in &mut self.seg {
            *v *= k;
        }
        true
    }

    /// Largest correlation of the template with the segment around `c`, over
    /// lags of ±10 ms (1 when there is no template yet).
    fn correlation(&mut self, c: i64) -> f32 {
        if self.tpl_beats == 0 {
            return 1.0;
        }
        let mut best = -1.0f32;
        for lag in -self.tpl_lag..=self.tpl_lag {
            if self.segment(c + lag) {
                let r: f32 = self.seg.iter().zip(&self.tpl).map(|(a, b)| a * b).sum();
                best = best.max(r);
            }
        }
        best
    }

    fn noisy(&self) -> bool {
        self.floor_ratio() > NOISY_FLOOR
    }

    /// Second stage in noisy signal: an early candidate (RR below 0.6 of the median)
    /// that is not much bigger than the typical QRS must resemble the recent beats
    /// (template correlation at least 0.6). Noise peaks come at any time; true early
    /// beats in noise are rarely both small and unlike the beats around them.
    fn verified(&mut self, p: &Peak, since: Option<i64>) -> bool {
        if !self.noisy() {
            return true;
        }
        let premature = since.is_some_and(|s| (s as f32) < PREMATURE * median(&self.rr))
            && p.val < PREMATURE_MAX * median(&self.qrs);
        if !premature {
            return true;
        }
        let c = self.place(p.loc);
        self.correlation(c) >= MIN_CORR
    }

    /// Early and small among large noise peaks: bursts of motion or muscle noise
    /// that stay short leave the MWI floor (and so [`QrsDetector::noisy`]) low, but
    /// their peaks raise the median rejected peak. There, a candidate well before the
    /// next beat is due that is also clearly smaller than the typical QRS peak is far
    /// more often an artefact than an early beat (premature ventricular beats are
    /// mostly as large as the normal ones or larger in the MWI, being wide). A
    /// candidate it rejects joins the noise peaks, so the rule can hold itself on; it
    /// lets go as large peaks come on time and the rejected ones age out of the eight.
    fn early_noise(&self, p: &Peak, since: Option<i64>) -> bool {
        let q = median(&self.qrs);
        since.is_some_and(|s| (s as f32) < EARLY_RR * median(&self.rr))
            && p.val < EARLY_MAX * q
            && median(&self.noise) >= NOISY_PEAKS * q
    }

    fn learn_template(&mut self, c: i64) {
        // In clean signal every beat updates the template (so it follows changes
        // of morphology); in noise only beats that already resemble it.
        if self.tpl_beats >= 4 && self.noisy() && self.correlation(c) < UPDATE_CORR {
            return;
        }
        if !self.segment(c) {
            return;
        }
        let a = 1.0 / (self.tpl_beats.min(7) + 1) as f32;
        for (t, v) in self.tpl.iter_mut().zip(&self.seg) {
            *t += a * (v - *t);
        }
        // Keep unit energy.
        let e: f32 = self.tpl.iter().map(|v| v * v).sum();
        if e > 0.0 {
            let k = 1.0 / e.sqrt();
            for t in &mut self.tpl {
                *t *= k;
            }
        }
        self.tpl_beats = self.tpl_beats.saturating_add(1);
    }

    fn accept(&mut self, p: Peak, maxder: f32, out: &mut Vec<u64>) {
        push_buf(&mut self.qrs, p.val);
        if let Some(last) = self.last_qrs {
            push_buf(&mut self.rr, (p.loc - last) as f32);
        }
        self.last_qrs = Some(p.loc);
        self.last_reset = p.loc;
        self.last_maxder = maxder;
        self.sb = None;
        // Place the beat on the largest band-passed deflection within ±80 ms.
        let best = self.place(p.loc);
        self.learn_template(best);
        let Ok(beat) = u64::try_from(best) else {
            return;
        };

        let too_old = self.n.saturating_sub(1).saturating_sub(beat) > self.latency as u64;
        if too_old || self.last_out.is_some_and(|l| beat <= l) {
            return;
        }
        self.last_out = Some(beat);
        out.push(beat);
    }

    fn search_back(&mut self, out: &mut Vec<u64>) {
        let (Some(last), Some(sb)) = (self.last_qrs, self.sb) else {
            return;
        };
        let now = self.n as i64 - 1 - self.d_mwi;
        // The next beat was due 1.5 RR after the last (at most `sb_cap`); a recording
        // that ended before then has not missed it.
        let due = last + ((1.5 * median(&self.rr)) as i64).min(self.sb_cap);
        if self.end.is_some_and(|end| due >= end) {
            return;
        }
        if now > due + self.hold && sb.val > SB_FRAC * self.threshold() {
            let der = self.sb_der;
            self.accept(sb, der, out);
        }
    }

    fn maybe_reset(&mut self) {
        let now = self.n as i64 - 1 - self.d_mwi;
        let eight = 8 * self.sec as i64;
        if now - self.last_reset > eight && self.sec_max.len() == NBUF {
            self.qrs = self.sec_max.clone();
            self.noise.clear();
            self.rr.clear();
            self.rr.push_front(self.fs as f32);
            self.sb = None;
            self.last_reset = now;
        }
    }
}
