//! Writes the noise-stress mixtures that the QRS tests score
//! (`dsp/tests/common/nst.rs`) as WFDB records, so that `cardiostream eval qrs` and
//! NeuroKit2 (`scripts/eval-qrs-neurokit.sh`) read exactly the same samples.
//!
//! ```sh
//! cargo run --release -p ecg-dsp --example nst_records -- OUT_DIR [DATA_DIR]
//! ```
//!
//! For every noise (`bw`, `ma`, `em`) and SNR (12, 6 dB) it writes
//! `OUT_DIR/<noise>_<snr>/<record>.{hea,dat,atr}` for every shared MIT-BIH record:
//! both signals mixed (format 16, the record's gain, ADC zero removed as `nst`
//! does), the reference annotations copied unchanged. The held-out records (the
//! ones not in `QRS_TUNING`) get the time-shifted noise, as in the tests.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ecg_ingest::wfdb;

fn main() {
    if let Err(e) = run() {
        eprintln!("nst_records: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: nst_records OUT_DIR [DATA_DIR]")?);
    let data = match args.next() {
        Some(d) => PathBuf::from(d),
        None => common::data_dir()?,
    };
    let (mitdb, nstdb) = (data.join("mitdb"), data.join("nstdb"));
    let mut names: Vec<String> = std::fs::read_dir(&mitdb)
        .map_err(|e| format!("{}: {e}", mitdb.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".atr").map(str::to_string)
        })
        .collect();
    names.sort();
    for noise_name in common::nst::NOISES {
        let noise = common::nst::load_noise(&nstdb, &mitdb, noise_name)?;
        for snr in common::nst::SNRS {
            let dir = out.join(format!("{noise_name}_{snr}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for name in &names {
                let rec = wfdb::read_record(&mitdb.join(name)).map_err(|e| e.to_string())?;
                let ann = wfdb::read_annotations(&mitdb.join(format!("{name}.atr")))
                    .map_err(|e| e.to_string())?;
                let normal = common::nst::amplitude_beats(&ann);
                let held_out = !common::QRS_TUNING.contains(&name.as_str());
                let sigs = (0..rec.signals.len())
                    .map(|i| common::nst::mix_signal(&rec, &normal, i, &noise, snr, held_out))
                    .collect::<Result<Vec<_>, _>>()?;
                let note = format!(
                    "{name} + {noise_name} noise at {snr} dB SNR (nst definition and standard protocol{})",
                    if held_out && noise.shiftable {
                        ", noise shifted by 120 s"
                    } else {
                        ""
                    }
                );
                write_record(&dir, name, &rec, &sigs, &note)?;
                std::fs::copy(
                    mitdb.join(format!("{name}.atr")),
                    dir.join(format!("{name}.atr")),
                )
                .map_err(|e| format!("copying {name}.atr: {e}"))?;
            }
            println!("{}", dir.display());
        }
    }
    Ok(())
}

/// Writes `sigs` (digital, ADC zero removed) as record `name` in format 16.
fn write_record(
    dir: &Path,
    name: &str,
    rec: &wfdb::Record,
    sigs: &[Vec<i32>],
    note: &str,
) -> Result<(), String> {
    let n = sigs.iter().map(Vec::len).min().unwrap_or(0);
    let clamp = |v: i32| v.clamp(-32767, 32767) as i16;
    let mut bytes = Vec::with_capacity(n * sigs.len() * 2);
    for t in 0..n {
        for s in sigs {
            bytes.extend_from_slice(&clamp(s[t]).to_le_bytes());
        }
    }
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, bytes).map_err(|e| format!("{}: {e}", dat.display()))?;
    let mut hea = format!("{name} {} {} {n}\n", sigs.len(), rec.fs);
    for (s, info) in sigs.iter().zip(&rec.signals) {
        let sum = s[..n]
            .iter()
            .fold(0i64, |a, &v| a.wrapping_add(i64::from(clamp(v))));
        let gain = if info.gain == 0.0 { 200.0 } else { info.gain };
        hea.push_str(&format!(
            "{name}.dat 16 {gain}({})/mV 16 0 {} {} 0 {}\n",
            info.baseline - info.adc_zero,
            s.first().map_or(0, |&v| clamp(v)),
            (sum as u16) as i16,
            info.description
        ));
    }
    hea.push_str(&format!("# {note}\n"));
    let path = dir.join(format!("{name}.hea"));
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(hea.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
