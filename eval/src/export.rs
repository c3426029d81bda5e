//! `cardiostream eval export-inputs`: a model's inputs for every record of a folder,
//! built by the pipeline's one model-input builder
//! ([`ecg_pipeline::inputs::record_inputs`]), for training scripts. What a model is
//! trained on is then what the pipeline and `eval` give it, value for value.
//!
//! Output, for `--out PREFIX`:
//! - `PREFIX.csv`: one line per window, `record,label,window,start_s,quality_ok,n_rr`
//!   and the `af_rr_v1` features `f0,…,f7` of the beats the pipeline's DSP finds in
//!   the window (a feature model's input; for a waveform model, what an RR input
//!   beside the waveform would get), then, for a model with `input.atrial_features`,
//!   the window's atrial-activity values under their names (`ln_p_amp`, …);
//! - `PREFIX.npy` (waveform models only): float32, shape `[windows, leads, samples]`,
//!   C order, the windows in the CSV's order (NumPy format 1.0).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ecg_dsp::stream::DspConfig;
use ecg_inference::{InputKind, Manifest};
use ecg_types::SampleRate;

use super::{read_reference, record_names};

/// Arguments of `eval export-inputs`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Folder with `*.hea` records (lead 0 of each is used) and optionally
    /// `REFERENCE.csv` labels.
    #[arg(long)]
    pub db: PathBuf,
    /// The model's manifest.
    #[arg(long)]
    pub model: PathBuf,
    /// Output prefix: writes PREFIX.csv (and PREFIX.npy for waveform models).
    #[arg(long)]
    pub out: PathBuf,
    /// Seconds between windows of a record (default: the manifest's hop, else its
    /// window length).
    #[arg(long)]
    pub hop_s: Option<f32>,
}

/// Runs `eval export-inputs`.
///
/// # Errors
/// When the manifest or the records cannot be read, or the output cannot be written.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.model)
        .with_context(|| format!("loading manifest {}", args.model.display()))?;
    let hop_s = args.hop_s.or(manifest.hop_s).unwrap_or(manifest.window_s);
    let reference = read_reference(&args.db);
    let cfg = DspConfig::default();
    let csv_path = with_ext(&args.out, "csv");
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&csv_path)
            .with_context(|| format!("creating {}", csv_path.display()))?,
    );
    let waveform = manifest.input.kind == InputKind::Waveform;
    let mut header = "record,label,window,start_s,quality_ok,n_rr".to_owned();
    for i in 0..ecg_dsp::AF_FEATURES {
        header.push_str(&format!(",f{i}"));
    }
    if manifest.input.atrial_features {
        for name in ecg_dsp::atrial::ATRIAL_FEATURE_NAMES {
            header.push_str(&format!(",{name}"));
        }
    }
    writeln!(csv, "{header}")?;
    let mut data: Vec<f32> = Vec::new();
    let (mut windows, mut records) = (0usize, 0usize);
    let lead = super::af::record_lead(&manifest);
    for name in record_names(&args.db)? {
        let rec = match ecg_ingest::wfdb::read_record(&args.db.join(&name)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        let fs = rec.fs.round() as u32;
        let sig = rec.physical(0);
        let inputs = ecg_pipeline::inputs::record_inputs(
            &manifest,
            hop_s,
            SampleRate(fs),
            &[lead],
            &sig,
            &cfg,
        )
        .with_context(|| format!("building inputs of {name}"))?;
        let label = reference.get(&name).map_or("", String::as_str);
        for (k, w) in inputs.iter().enumerate() {
            let mut line = format!(
                "{name},{label},{k},{:.3},{},{}",
                w.start.0 as f64 / 1e6,
                u8::from(w.quality_ok),
                w.rr_s.len()
            );
            if waveform {
                data.extend_from_slice(&w.samples_mv);
            }
            for v in &w.features {
                line.push_str(&format!(",{v:.6}"));
            }
            writeln!(csv, "{line}")?;
            windows += 1;
        }
        records += 1;
    }
    csv.flush()?;
    if waveform {
        let shape = [
            windows,
            manifest.input.leads.len(),
            manifest.input.samples(manifest.window_s),
        ];
        let npy = with_ext(&args.out, "npy");
        write_npy_f32(&npy, &shape, &data)?;
        eprintln!("wrote {} ({:?})", npy.display(), shape);
    }
    eprintln!(
        "wrote {windows} windows of {records} records to {}",
        csv_path.display()
    );
    Ok(())
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Writes a little-endian float32 array in NumPy's `.npy` format 1.0.
///
/// # Errors
/// When the shape does not match the data or the file cannot be written.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    let n: usize = shape.iter().product();
    anyhow::ensure!(
        n == data.len(),
        "shape {shape:?} holds {n} values, the data {}",
        data.len()
    );
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and a
    // newline to a multiple of 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&u16::try_from(header.len())?.to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let dir = std::env::temp_dir().join(format!("cs-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("x.npy");
        write_npy_f32(&p, &[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("written");
        let b = std::fs::read(&p).expect("read back");
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hl = usize::from(u16::from_le_bytes([b[8], b[9]]));
        assert_eq!((10 + hl) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hl]).expect("ascii");
        assert!(header.contains("'shape': (2, 1, 3)"), "{header}");
        assert_eq!(b.len(), 10 + hl + 6 * 4);
        assert_eq!(&b[10 + hl..10 + hl + 4], &1.0f32.to_le_bytes());
        assert!(write_npy_f32(&p, &[2, 2], &[1.0]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
