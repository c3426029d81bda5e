use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, NanovoltsPerCount, PatientId, SampleRate, StreamId,
};

use crate::Device;

/// Wraps a [`Device`] as a device gateway would: produces wire-ready [`Frame`]s of
/// integer samples with lead-off flags.
#[derive(Debug, Clone)]
pub struct FrameSource {
    device: Device,
    stream: StreamId,
    device_id: DeviceId,
    patient: PatientId,
    t0_us: i64,
    frame_samples: usize,
    scale_nv: u32,
    seq: u64,
    buf: Vec<f32>,
}

impl FrameSource {
    /// `t0_us`: device time of the first sample (µs since the Unix epoch); frames of
    /// `frame_samples` samples per lead (at least 1; 0 is treated as 1); integer samples
    /// at `scale_nv` nanovolts per count (e.g. 1000 = 1 µV/count; 0 is treated as 1),
    /// rounded and clamped to `i32`; `seq` starts at 0 and increments by one per frame.
    ///
    /// Frames are generated from the device's current position, so a device that has
    /// already produced samples continues where it left off (with `t0_us` still the time
    /// of its sample 0).
    pub fn new(
        device: Device,
        stream: StreamId,
        device_id: DeviceId,
        patient: PatientId,
        t0_us: i64,
        frame_samples: usize,
        scale_nv: u32,
    ) -> Self {
        Self {
            device,
            stream,
            device_id,
            patient,
            t0_us,
            frame_samples: frame_samples.max(1),
            scale_nv: scale_nv.max(1),
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// The next frame. A lead's `lead_off` flag is set if the lead-off schedule has it
    /// off at any sample of the frame.
    pub fn next_frame(&mut self) -> Frame {
        let rate = SampleRate(self.device.sample_rate());
        let start = self.device.position();
        let n = self.frame_samples;
        let end = start + n as u64;
        self.buf.clear();
        self.device.generate(n, &mut self.buf);
        let counts_per_mv = 1.0e6 / f64::from(self.scale_nv);
        let samples = self
            .buf
            .iter()
            .map(|&mv| {
                let c = (f64::from(mv) * counts_per_mv).round();
                // Saturating float-to-int cast clamps to the i32 range.
                c as i32
            })
            .collect();
        let leads = self.device.leads().to_vec();
        let lead_off = (0..leads.len())
            .map(|l| self.device.lead_off_in(l, start, end))
            .collect();
        let frame = Frame {
            stream: self.stream.clone(),
            device: self.device_id.clone(),
            patient: self.patient.clone(),
            seq: self.seq,
            t0: DeviceTimeUs(self.t0_us).plus_us(rate.samples_to_us(start)),
            sample_rate: rate,
            scale: NanovoltsPerCount(self.scale_nv),
            leads,
            lead_off,
            samples,
            pulses: Vec::new(),
            // The pacemaker pulses the device delivered, as a monitor flags them.
            pace: self
                .device
                .truth()
                .pace_in(start, end)
                .iter()
                .map(|&p| (p - start) as u32)
                .collect(),
        };
        self.seq += 1;
        frame
    }

    /// The wrapped device (for its ground truth and position).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Mutable access to the wrapped device, e.g. to
    /// [`forget_truth_before`](Device::forget_truth_before).
    pub fn device_mut(&mut self) -> &mut Device {
        &mut self.device
    }

    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Unwraps the device.
    pub fn into_device(self) -> Device {
        self.device
    }
}
