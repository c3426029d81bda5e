//! Per-lead ECG front end of the lethal-arrhythmia detector: decimation to a working
//! rate of about 125 Hz, a light beat detector with per-beat morphology, per-tick
//! signal statistics and a short history for the ventricular-fibrillation spectrum.
//!
//! Every lead runs this cheap chain; the decisions that combine leads live in the
//! parent module. Times are ECG sample indices of the stream's own rate.

use super::ring::{median_small, History, Ring};

/// Working rate the leads are decimated to (Hz, approximately: an integer factor).
pub(crate) const WORK_HZ: f64 = 125.0;
/// Longest snippet (samples at the working rate) of a beat's morphology.
pub(crate) const SNIP_MAX: usize = 64;
/// Peak buffers of the adaptive threshold.
const NBUF: usize = 8;
/// Threshold between the noise and beat peak levels.
const TH_FRAC: f32 = 0.3;
/// Smallest detection-feature peak that can be a beat (mV/s, about a 0.03 mV QRS).
const E_FLOOR: f32 = 0.5;
/// Template: a beat correlating at least this with it updates it.
const TMPL_MATCH: f32 = 0.85;
/// Beats matched before a template counts as established.
const TMPL_ESTABLISHED: u32 = 4;
/// Consecutive unmatched beats after which an established template is re-learned.
const TMPL_RELEARN: u32 = 60;

/// Parameters shared by every lead of a stream, derived from the ECG rate once.
#[derive(Debug, Clone)]
pub(crate) struct LeadParams {
    /// Decimation factor (input samples per working sample).
    pub(crate) d: usize,
    /// Working rate (Hz).
    pub(crate) fw: f32,
    /// Anti-alias FIR taps at the input rate (empty when `d == 1`).
    pub(crate) taps: Vec<f32>,
    /// Group delay of the decimation filter (input samples).
    pub(crate) dec_delay: u64,
    /// Pole of the 0.5 Hz baseline high-pass.
    hp_a: f32,
    /// Derivative lag (working samples).
    kd: usize,
    /// Moving-window integration length (working samples).
    mwi: usize,
    /// Delay of the detection feature behind the high-passed signal (working samples).
    g: usize,
    /// Radius of a detection-feature local maximum (working samples).
    r: usize,
    /// Half window of the fiducial search (working samples).
    fid_half: usize,
    /// Half length of a beat's morphology snippet (working samples).
    pub(crate) snip_half: usize,
    /// Largest alignment lag of two beats' snippets (working samples).
    max_lag: usize,
    /// Half window of the QRS width measurement (working samples).
    width_half: usize,
    /// No second beat within this of a beat (working samples).
    refractory: usize,
    /// A smaller peak this soon after a beat is a T wave (working samples).
    twave: usize,
    /// Learning period before the first beat decision (working samples).
    warmup: u64,
    /// Thresholds are re-learned after this long without a beat (working samples).
    relearn: u64,
    /// Run of identical raw values marking a stuck or clipped signal (input samples).
    stuck_run: u32,
    /// ECG samples per tick.
    pub(crate) tick: u64,
    /// Working samples averaged into one spectrum-history sample.
    pub(crate) vd: usize,
    /// Spectrum history rate (Hz).
    pub(crate) fv: f32,
    /// Spectrum history capacity (samples).
    vf_cap: usize,
}

impl LeadParams {
    pub(crate) fn new(fs: u32, tick: u64, vf_history_s: f32) -> Self {
        let fs_f = f64::from(fs.max(1));
        let d = ((fs_f / WORK_HZ).round() as usize).max(1);
        let fw = fs_f / d as f64;
        let taps = if d > 1 {
            lowpass_taps(d, 0.35 / d as f64)
        } else {
            Vec::new()
        };
        let dec_delay = (taps.len().saturating_sub(1) / 2) as u64;
        let n = |s: f64| ((s * fw).round() as usize).max(1);
        let kd = n(0.016);
        let mwi = n(0.12);
        let g = 1 + kd / 2 + (mwi - 1) / 2;
        let vd = ((fw / 50.0).floor() as usize).max(1);
        let fv = (fw / vd as f64) as f32;
        Self {
            d,
            fw: fw as f32,
            taps,
            dec_delay,
            hp_a: (-2.0 * std::f64::consts::PI * 0.5 / fw).exp() as f32,
            kd,
            mwi,
            g,
            r: n(0.15),
            fid_half: n(0.06),
            snip_half: n(0.12).min(SNIP_MAX / 2 - 1),
            width_half: n(0.15),
            max_lag: n(0.05),
            refractory: n(0.2),
            twave: n(0.36),
            warmup: n(2.0) as u64,
            relearn: n(8.0) as u64,
            stuck_run: ((0.04 * fs_f).round() as u32).max(3),
            tick,
            vd,
            fv,
            vf_cap: (f64::from(vf_history_s) * f64::from(fv)).ceil() as usize + 4,
        }
    }

    /// ECG sample index of working sample `k` (negative for the filter's start-up).
    pub(crate) fn time_of(&self, k: u64) -> i64 {
        ((k + 1) * self.d as u64) as i64 - 1 - self.dec_delay as i64
    }

    /// Fixed delay (ECG samples) between a beat and the input sample at which it is
    /// stored, an upper bound.
    pub(crate) fn beat_latency(&self) -> u64 {
        // Peak confirmation (r) or the features' right edge, whichever is later,
        // plus the detection delay and the decimator.
        let right = (self.fid_half + self.width_half.max(self.snip_half) + self.kd + 3)
            .max(self.r + self.g);
        (right as u64 + 2) * self.d as u64 + self.dec_delay
    }
}

/// Windowed-sinc (Hamming) low-pass with cutoff `fc` (fraction of the input rate),
/// `8 d + 1` taps, unit DC gain.
fn lowpass_taps(d: usize, fc: f64) -> Vec<f32> {
    let n = 8 * d + 1;
    let m = (n - 1) as f64 / 2.0;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - m;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            sinc * w
        })
        .collect();
    let s: f64 = h.iter().sum();
    for v in &mut h {
        *v /= s;
    }
    h.into_iter().map(|v| v as f32).collect()
}

/// One detection-feature peak of a lead, a beat or not, with its morphology.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Beat {
    /// ECG sample of the fiducial (steepest slope of the complex).
    pub(crate) t: u64,
    /// Detection-feature peak (mean absolute slope over 120 ms, mV/s).
    pub(crate) e: f32,
    /// Beat peak level of the lead when it was found (mV/s).
    pub(crate) level: f32,
    /// Peak-to-peak amplitude of the complex (mV).
    pub(crate) amp: f32,
    /// QRS width estimate (s).
    pub(crate) width: f32,
    /// Correlation with the lead's dominant template; NaN while none is established.
    pub(crate) corr: f32,
    /// Correlation with the previous beat of the lead.
    pub(crate) corr_prev: f32,
    /// Passed the detection threshold.
    pub(crate) beat: bool,
}

/// Signal statistics of one tick of one lead.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TickStats {
    /// Tick index (tick `i` covers ECG samples `[i·tick, (i+1)·tick)`).
    pub(crate) tick: u64,
    /// Working samples in the tick.
    pub(crate) n: u16,
    /// Working samples flagged lead-off or missing.
    pub(crate) bad: u16,
    /// Range of the high-passed signal (mV).
    pub(crate) hp_min: f32,
    pub(crate) hp_max: f32,
    /// Smallest, largest and summed detection feature (mV/s).
    pub(crate) e_min: f32,
    pub(crate) e_max: f32,
    pub(crate) e_sum: f32,
}

impl TickStats {
    fn start(tick: u64) -> Self {
        Self {
            tick,
            hp_min: f32::INFINITY,
            hp_max: f32::NEG_INFINITY,
            e_min: f32::INFINITY,
            e_max: 0.0,
            ..Self::default()
        }
    }

    pub(crate) fn bad_frac(&self) -> f32 {
        if self.n == 0 {
            1.0
        } else {
            f32::from(self.bad) / f32::from(self.n)
        }
    }

    pub(crate) fn range(&self) -> f32 {
        if self.n == 0 {
            0.0
        } else {
            self.hp_max - self.hp_min
        }
    }
}

/// Clipping count of one tick of raw input.
#[derive(Debug, Clone, Copy, Default)]
struct ClipTick {
    tick: u64,
    n: u16,
    clipped: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClipCur {
    tick: u64,
    n: u16,
    max: f32,
    min: f32,
    at_max: u16,
    at_min: u16,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Working index of the detection-feature peak.
    k: u64,
    e: f32,
}

/// The per-lead state.
#[derive(Debug, Clone)]
pub(crate) struct LeadFront {
    // Input side.
    dec_buf: Vec<f32>,
    dec_pos: usize,
    phase: usize,
    last_raw: f32,
    run: u32,
    bad_in_block: bool,
    started: bool,
    n_in: u64,
    clip_cur: ClipCur,
    clips: Ring<ClipTick>,
    // Working side.
    k: u64,
    hp_x1: f32,
    hp_y1: f32,
    hp: History,
    f_hist: [f32; 8],
    mwi_buf: Vec<f32>,
    mwi_pos: usize,
    mwi_sum: f32,
    e_prev: f32,
    cand: Option<(u64, f32)>,
    pending: Option<Pending>,
    // Thresholds.
    warm_max: f32,
    warm_sum: f32,
    spk: [f32; NBUF],
    npk: [f32; NBUF],
    spk_pos: usize,
    npk_pos: usize,
    last_beat: Option<(u64, f32)>,
    rr: [f32; NBUF],
    rr_n: usize,
    rr_pos: usize,
    sec_max: [f32; 8],
    sec_pos: usize,
    sec_cur: f32,
    sec_k: u64,
    // Morphology.
    template: [f32; SNIP_MAX],
    tmpl_n: u32,
    tmpl_miss: u32,
    tmpl_width: f32,
    tmpl_amp: f32,
    prev_snip: [f32; SNIP_MAX],
    has_prev: bool,
    // Outputs.
    pub(crate) beats: Ring<Beat>,
    pub(crate) ticks: Ring<TickStats>,
    cur: TickStats,
    vf: History,
    vf_acc: f32,
    vf_cnt: usize,
}

impl LeadFront {
    pub(crate) fn new(p: &LeadParams, history_s: f32) -> Self {
        let n_taps = p.taps.len().max(1);
        let beats_cap = (history_s * 6.0).ceil() as usize + 8;
        Self {
            dec_buf: vec![0.0; 2 * n_taps],
            dec_pos: 0,
            phase: 0,
            last_raw: f32::NAN,
            run: 0,
            bad_in_block: false,
            started: false,
            n_in: 0,
            clip_cur: ClipCur::default(),
            clips: Ring::new(history_s.ceil() as usize + 4),
            k: 0,
            hp_x1: 0.0,
            hp_y1: 0.0,
            hp: History::new((0.8 * p.fw) as usize),
            f_hist: [0.0; 8],
            mwi_buf: vec![0.0; p.mwi],
            mwi_pos: 0,
            mwi_sum: 0.0,
            e_prev: 0.0,
            cand: None,
            pending: None,
            warm_max: 0.0,
            warm_sum: 0.0,
            spk: [0.0; NBUF],
            npk: [0.0; NBUF],
            spk_pos: 0,
            npk_pos: 0,
            last_beat: None,
            rr: [0.0; NBUF],
            rr_n: 0,
            rr_pos: 0,
            sec_max: [0.0; 8],
            sec_pos: 0,
            sec_cur: 0.0,
            sec_k: 0,
            template: [0.0; SNIP_MAX],
            tmpl_n: 0,
            tmpl_miss: 0,
            tmpl_width: 0.0,
            tmpl_amp: 0.0,
            prev_snip: [0.0; SNIP_MAX],
            has_prev: false,
            beats: Ring::new(beats_cap),
            ticks: Ring::new(history_s.ceil() as usize + 4),
            cur: TickStats::start(0),
            vf: History::new(p.vf_cap),
            vf_acc: 0.0,
            vf_cnt: 0,
        }
    }

    /// Heap bytes held by this lead.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.dec_buf.capacity() * 4
            + self.hp.bytes()
            + self.mwi_buf.capacity() * 4
            + self.beats.bytes()
            + self.ticks.bytes()
            + self.vf.bytes()
            + self.clips.bytes()
    }

    /// Feeds input samples (mV) of this lead; `off` marks the whole block lead-off.
    pub(crate) fn push(&mut self, p: &LeadParams, x: &[f32], off: bool) {
        for &v in x {
            let valid = v.is_finite() && !off;
            let v = if v.is_finite() {
                v
            } else if self.last_raw.is_finite() {
                self.last_raw
            } else {
                0.0
            };
            if v == self.last_raw {
                self.run = self.run.saturating_add(1);
            } else {
                self.run = 0;
            }
            self.last_raw = v;
            if !valid {
                self.bad_in_block = true;
            }
            self.clip_step(p, v, self.run + 1 >= p.stuck_run);
            if !self.started {
                self.started = true;
                self.hp_x1 = v;
                let n = self.dec_buf.len() / 2;
                for i in 0..n {
                    self.dec_buf[i] = v;
                    self.dec_buf[i + n] = v;
                }
            }
            if p.d == 1 {
                let bad = std::mem::take(&mut self.bad_in_block);
                self.work(p, v, bad);
                continue;
            }
            let n = p.taps.len();
            self.dec_buf[self.dec_pos] = v;
            self.dec_buf[self.dec_pos + n] = v;
            self.dec_pos = (self.dec_pos + 1) % n;
            self.phase += 1;
            if self.phase == p.d {
                self.phase = 0;
                // The window of the last n samples, oldest first, starts at dec_pos.
                let w = &self.dec_buf[self.dec_pos..self.dec_pos + n];
                let y: f32 = w.iter().zip(&p.taps).map(|(a, b)| a * b).sum();
                let bad = std::mem::take(&mut self.bad_in_block);
                self.work(p, y, bad);
            }
        }
    }

    /// Clipping: samples in runs of identical raw values at the tick's maximum or
    /// minimum (a rail), or a tick of one constant value (a lead stuck or off). A flat
    /// but live trace (asystole) wanders around its runs, so they are not at its
    /// extremes.
    fn clip_step(&mut self, p: &LeadParams, v: f32, in_run: bool) {
        let tick = self.n_in / p.tick;
        self.n_in += 1;
        let c = &mut self.clip_cur;
        if tick != c.tick || c.n == 0 {
            if c.n > 0 {
                let (range, n, at_ext) = (c.max - c.min, c.n, c.at_max + c.at_min);
                let clipped = if range == 0.0 {
                    n
                } else if range > 0.5 {
                    at_ext.min(n)
                } else {
                    0
                };
                self.clips.push(ClipTick {
                    tick: c.tick,
                    n,
                    clipped,
                });
            }
            *c = ClipCur {
                tick,
                n: 0,
                max: v,
                min: v,
                at_max: 0,
                at_min: 0,
            };
        }
        c.n = c.n.saturating_add(1);
        if v > c.max {
            c.max = v;
            c.at_max = 0;
        }
        if v < c.min {
            c.min = v;
            c.at_min = 0;
        }
        if in_run {
            if v == c.max {
                c.at_max = c.at_max.saturating_add(1);
            }
            if v == c.min {
                c.at_min = c.at_min.saturating_add(1);
            }
        }
    }

    /// Share of clipped raw samples over the ticks `[t0, t1)`.
    pub(crate) fn clipped_frac(&self, t0: u64, t1: u64) -> f32 {
        let (mut n, mut c) = (0u32, 0u32);
        for k in self.clips.iter().filter(|k| k.tick >= t0 && k.tick < t1) {
            n += u32::from(k.n);
            c += u32::from(k.clipped);
        }
        if n == 0 {
            0.0
        } else {
            c as f32 / n as f32
        }
    }

    fn work(&mut self, p: &LeadParams, y: f32, bad: bool) {
        let k = self.k;
        self.k += 1;
        // Baseline high-pass (first order, 0.5 Hz).
        let hp = y - self.hp_x1 + p.hp_a * self.hp_y1;
        self.hp_x1 = y;
        self.hp_y1 = hp;
        self.hp.push(hp);
        // Smoothing [1 2 1]/4, slope over kd samples, mean absolute slope over 120 ms.
        let h1 = self.hp.at(k.saturating_sub(1));
        let h2 = self.hp.at(k.saturating_sub(2));
        let f = 0.25 * (hp + 2.0 * h1 + h2);
        self.f_hist.rotate_right(1);
        self.f_hist[0] = f;
        let s = (f - self.f_hist[p.kd.min(7)]) * p.fw / p.kd as f32;
        let a = s.abs();
        self.mwi_sum += a - self.mwi_buf[self.mwi_pos];
        self.mwi_buf[self.mwi_pos] = a;
        self.mwi_pos = (self.mwi_pos + 1) % self.mwi_buf.len();
        let e = (self.mwi_sum / p.mwi as f32).max(0.0);

        // Tick statistics, by the ECG time of this working sample (the high-passed
        // signal; the detection feature is attributed to the same tick though it lags
        // by `g` samples, which only blurs tick edges).
        let t = p.time_of(k);
        if t >= 0 {
            let tick = t as u64 / p.tick;
            if tick != self.cur.tick {
                if self.cur.n > 0 {
                    self.ticks.push(self.cur);
                }
                self.cur = TickStats::start(tick);
            }
            let c = &mut self.cur;
            c.n = c.n.saturating_add(1);
            if bad {
                c.bad = c.bad.saturating_add(1);
            }
            c.hp_min = c.hp_min.min(hp);
            c.hp_max = c.hp_max.max(hp);
            c.e_min = c.e_min.min(e);
            c.e_max = c.e_max.max(e);
            c.e_sum += e;
        }

        // Spectrum history.
        self.vf_acc += hp;
        self.vf_cnt += 1;
        if self.vf_cnt == p.vd {
            self.vf.push(self.vf_acc / p.vd as f32);
            self.vf_acc = 0.0;
            self.vf_cnt = 0;
        }

        // Per-second maxima for re-learning.
        self.sec_cur = self.sec_cur.max(e);
        self.sec_k += 1;
        if self.sec_k as f32 >= p.fw {
            self.sec_max[self.sec_pos] = self.sec_cur;
            self.sec_pos = (self.sec_pos + 1) % self.sec_max.len();
            self.sec_cur = 0.0;
            self.sec_k = 0;
        }

        // Warm-up: learn the levels.
        if k < p.warmup {
            self.warm_max = self.warm_max.max(e);
            self.warm_sum += e;
            if k + 1 == p.warmup {
                let lvl = self.warm_max * 0.6;
                let noise = self.warm_sum / p.warmup as f32;
                self.spk = [lvl; NBUF];
                self.npk = [noise; NBUF];
            }
        }

        // Local maxima of the detection feature within ±r.
        if e > self.e_prev && self.cand.is_none_or(|(_, v)| e > v) {
            self.cand = Some((k, e));
        }
        self.e_prev = e;
        if let Some((kc, v)) = self.cand {
            if k >= kc + p.r as u64 {
                self.cand = None;
                if k >= p.warmup && v > 0.1 * E_FLOOR {
                    // A later, larger peak replaces a pending one within the radius.
                    match self.pending {
                        Some(pd) if kc < pd.k + p.r as u64 => {
                            if v > pd.e {
                                self.pending = Some(Pending { k: kc, e: v });
                            }
                        }
                        Some(pd) => {
                            self.finish(p, pd);
                            self.pending = Some(Pending { k: kc, e: v });
                        }
                        None => self.pending = Some(Pending { k: kc, e: v }),
                    }
                }
            }
        }
        if let Some(pd) = self.pending {
            if k >= self.ready_at(p, pd) {
                self.pending = None;
                self.finish(p, pd);
            }
        }
        self.maybe_relearn(p, k);
    }

    /// Working index at which the features of a pending peak can be measured.
    fn ready_at(&self, p: &LeadParams, pd: Pending) -> u64 {
        let c = pd.k.saturating_sub(p.g as u64);
        (c + (p.fid_half + p.width_half.max(p.snip_half) + p.kd + 3) as u64).max(pd.k + p.r as u64)
    }

    fn threshold(&self) -> (f32, f32) {
        let s = median_small(&self.spk);
        let n = median_small(&self.npk);
        ((n + TH_FRAC * (s - n)).max(E_FLOOR), s)
    }

    fn rr_mean(&self) -> Option<f32> {
        (self.rr_n >= 2).then(|| median_small(&self.rr[..self.rr_n.min(NBUF)]))
    }

    fn maybe_relearn(&mut self, p: &LeadParams, k: u64) {
        let last = self.last_beat.map_or(p.warmup, |(kb, _)| kb.max(p.warmup));
        if k > last + p.relearn && (k - last).is_multiple_of(p.relearn / 2) {
            let mx = self.sec_max.iter().copied().fold(0.0f32, f32::max);
            if mx > E_FLOOR {
                self.spk = [0.6 * mx; NBUF];
                self.npk = [0.1 * mx; NBUF];
            }
        }
    }

    /// Measures a confirmed peak, decides whether it is a beat and stores it.
    fn finish(&mut self, p: &LeadParams, pd: Pending) {
        let c = pd.k.saturating_sub(p.g as u64);
        // Fiducial: steepest slope within ±fid_half of the expected centre.
        let slope = |j: u64| -> f32 {
            let f = |i: u64| {
                0.25 * (self.hp.at(i)
                    + 2.0 * self.hp.at(i.saturating_sub(1))
                    + self.hp.at(i.saturating_sub(2)))
            };
            f(j + 1 + p.kd as u64 / 2) - f((j + 1 + p.kd as u64 / 2).saturating_sub(p.kd as u64))
        };
        let lo = c.saturating_sub(p.fid_half as u64);
        let mut fid = c;
        let mut best = -1.0f32;
        for j in lo..=c + p.fid_half as u64 {
            let a = slope(j).abs();
            if a > best {
                best = a;
                fid = j;
            }
        }
        // Width: span where the slope exceeds 30 % of its maximum.
        let wlo = fid.saturating_sub(p.width_half as u64);
        let whi = fid + p.width_half as u64;
        let mut smax = 0.0f32;
        for j in wlo..=whi {
            smax = smax.max(slope(j).abs());
        }
        let mut first = fid;
        let mut last = fid;
        for j in wlo..=whi {
            if slope(j).abs() >= 0.3 * smax {
                first = first.min(j);
                last = last.max(j);
            }
        }
        let width = (last - first) as f32 / p.fw;
        // Snippet, mean removed.
        let nt = 2 * p.snip_half + 1;
        let mut z = [0.0f32; SNIP_MAX];
        let s0 = fid.saturating_sub(p.snip_half as u64);
        let mut mean = 0.0;
        for (i, zi) in z[..nt].iter_mut().enumerate() {
            *zi = self.hp.at(s0 + i as u64);
            mean += *zi;
        }
        mean /= nt as f32;
        let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
        for zi in &mut z[..nt] {
            *zi -= mean;
            mn = mn.min(*zi);
            mx = mx.max(*zi);
        }
        let amp = mx - mn;

        // Beat decision.
        let t = p.time_of(fid).max(0) as u64;
        let (mut th, level) = self.threshold();
        let since = self.last_beat.map(|(kb, _)| fid.saturating_sub(kb));
        let rr = self.rr_mean().unwrap_or(1.0) * p.fw;
        if since.is_none_or(|s| s as f32 > 1.5 * rr) {
            th *= 0.5;
        }
        let mut is_beat = pd.e >= th.max(E_FLOOR);
        if let (Some(s), Some((_, le))) = (since, self.last_beat) {
            if s < p.refractory as u64 || (s < p.twave as u64 && pd.e < 0.5 * le) {
                is_beat = false;
            }
        }

        let corr_prev = if self.has_prev {
            best_corr(&z[..nt], &self.prev_snip[..nt], p.max_lag)
        } else {
            f32::NAN
        };
        let corr = if self.tmpl_n >= TMPL_ESTABLISHED {
            best_corr(&z[..nt], &self.template[..nt], p.max_lag)
        } else {
            f32::NAN
        };

        if is_beat {
            self.spk[self.spk_pos] = pd.e;
            self.spk_pos = (self.spk_pos + 1) % NBUF;
            if let Some((kb, _)) = self.last_beat {
                let r = (fid - kb) as f32 / p.fw;
                if r < 3.0 {
                    self.rr[self.rr_pos] = r;
                    self.rr_pos = (self.rr_pos + 1) % NBUF;
                    self.rr_n += 1;
                }
            }
            self.last_beat = Some((fid, pd.e));
            self.update_template(&z[..nt], width, amp, p.max_lag);
            self.prev_snip[..nt].copy_from_slice(&z[..nt]);
            self.has_prev = true;
        } else {
            self.npk[self.npk_pos] = pd.e;
            self.npk_pos = (self.npk_pos + 1) % NBUF;
        }
        self.beats.push(Beat {
            t,
            e: pd.e,
            level,
            amp,
            width,
            corr,
            corr_prev,
            beat: is_beat,
        });
    }

    fn update_template(&mut self, z: &[f32], width: f32, amp: f32, max_lag: usize) {
        let nt = z.len();
        if self.tmpl_n == 0 {
            self.template[..nt].copy_from_slice(z);
            self.tmpl_n = 1;
            self.tmpl_width = width;
            self.tmpl_amp = amp;
            return;
        }
        let (c, lag) = best_corr_lag(z, &self.template[..nt], max_lag);
        let amp_ok = amp > 0.4 * self.tmpl_amp && amp < 2.5 * self.tmpl_amp;
        if c >= TMPL_MATCH && amp_ok {
            // Average in the beat aligned to the template.
            let a = 1.0 / (self.tmpl_n.min(15) + 1) as f32;
            for (i, t) in self.template[..nt].iter_mut().enumerate() {
                let j = i as isize + lag;
                if j >= 0 && (j as usize) < nt {
                    *t += a * (z[j as usize] - *t);
                }
            }
            self.tmpl_width += a * (width - self.tmpl_width);
            self.tmpl_amp += a * (amp - self.tmpl_amp);
            self.tmpl_n += 1;
            self.tmpl_miss = 0;
        } else {
            self.tmpl_miss += 1;
            let limit = if self.tmpl_n < TMPL_ESTABLISHED {
                2
            } else {
                TMPL_RELEARN
            };
            if self.tmpl_miss >= limit {
                self.template[..nt].copy_from_slice(z);
                self.tmpl_n = 1;
                self.tmpl_miss = 0;
                self.tmpl_width = width;
                self.tmpl_amp = amp;
            }
        }
    }

    /// The lead's established dominant-beat width (s) and amplitude (mV).
    pub(crate) fn template_shape(&self) -> Option<(f32, f32)> {
        (self.tmpl_n >= TMPL_ESTABLISHED).then_some((self.tmpl_width, self.tmpl_amp))
    }

    /// The spectrum history (high-passed signal at [`LeadParams::fv`]) and the ECG
    /// time of its sample `j`.
    pub(crate) fn vf_history(&self) -> &History {
        &self.vf
    }

    /// ECG time of spectrum-history sample `j`.
    pub(crate) fn vf_time(p: &LeadParams, j: u64) -> i64 {
        let k = j * p.vd as u64 + (p.vd as u64 - 1) / 2;
        p.time_of(k)
    }
}

/// Largest Pearson correlation of `a` and `b` over lags of up to ±`max_lag` samples
/// (the overlapping parts).
pub(crate) fn best_corr(a: &[f32], b: &[f32], max_lag: usize) -> f32 {
    best_corr_lag(a, b, max_lag).0
}

/// [`best_corr`] and its lag: `a[i + lag]` lines up with `b[i]`.
pub(crate) fn best_corr_lag(a: &[f32], b: &[f32], max_lag: usize) -> (f32, isize) {
    let n = a.len().min(b.len());
    let mut best = -1.0f32;
    let mut best_lag = 0isize;
    for lag in -(max_lag as isize)..=(max_lag as isize) {
        let (a0, b0) = if lag >= 0 {
            (lag as usize, 0)
        } else {
            (0, (-lag) as usize)
        };
        let m = n - lag.unsigned_abs();
        if m < 4 {
            continue;
        }
        let (aa, bb) = (&a[a0..a0 + m], &b[b0..b0 + m]);
        let ma = aa.iter().sum::<f32>() / m as f32;
        let mb = bb.iter().sum::<f32>() / m as f32;
        let (mut sab, mut saa, mut sbb) = (0.0f32, 0.0f32, 0.0f32);
        for (&x, &y) in aa.iter().zip(bb) {
            let (dx, dy) = (x - ma, y - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
        let den = (saa * sbb).sqrt();
        if den > 0.0 && sab / den > best {
            best = sab / den;
            best_lag = lag;
        }
    }
    (best, best_lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_taps_have_unit_gain() {
        for d in [2, 3, 4, 8] {
            let t = lowpass_taps(d, 0.35 / d as f64);
            let s: f32 = t.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "d={d} sum={s}");
            assert_eq!(t.len(), 8 * d + 1);
        }
    }

    #[test]
    fn params_cover_common_rates() {
        for (fs, d) in [(250, 2), (500, 4), (360, 3), (128, 1), (1000, 8)] {
            let p = LeadParams::new(fs, u64::from(fs), 6.0);
            assert_eq!(p.d, d, "fs {fs}");
            assert!(p.fw > 100.0 && p.fw < 200.0);
            assert!(
                p.beat_latency() < u64::from(fs) / 2,
                "fs {fs}: {}",
                p.beat_latency()
            );
        }
    }

    #[test]
    fn correlation_finds_shifted_copies() {
        let a: Vec<f32> = (0..31).map(|i| ((i as f32) * 0.4).sin()).collect();
        let b: Vec<f32> = (0..31).map(|i| ((i as f32 + 1.0) * 0.4).sin()).collect();
        assert!(best_corr(&a, &b, 2) > 0.99);
        let c: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!(best_corr(&a, &c, 0) < -0.99);
    }
}
