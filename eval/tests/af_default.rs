//! `cardiostream eval af` classifies with the active AF model unless told otherwise:
//! what a user who runs `eval af --db DIR --out FILE` measures is the model the
//! pipeline raises AF findings from, not the RR rule (the default until stop 37), with
//! `--models` or with the models the binary finds itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use clap::Parser;
use ecg_eval::af::{run, AfArgs};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    af: AfArgs,
}

fn parse(args: &[&str]) -> Result<AfArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("af").chain(args.iter().copied())).map(|c| c.af)
}

#[test]
fn the_default_is_the_active_model_and_the_rule_is_asked_for() {
    let a = parse(&["--db", "d", "--out", "o"]).unwrap();
    assert!(!a.rule && a.model.is_none() && a.models.is_none());
    assert!(parse(&["--db", "d", "--out", "o", "--rule"]).unwrap().rule);
    // A model and the rule, or the rule's tuning dump without the rule, are errors.
    for bad in [
        &["--rule", "--model", "m.toml"][..],
        &["--rule", "--models", "models"],
        &["--rule", "--quality-gate"],
        &["--model", "m.toml", "--models", "models"],
        &["--dump", "f.csv"],
    ] {
        let args: Vec<&str> = ["--db", "d", "--out", "o"]
            .iter()
            .chain(bad)
            .copied()
            .collect();
        assert!(parse(&args).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn eval_af_without_a_model_gives_the_active_models_labels() {
    let Some(cinc) = common::data_dir()
        .map(|d| d.join("cinc2017"))
        .filter(|d| d.is_dir())
    else {
        println!("skipping: shared records not available (../shared/data or CARDIOSTREAM_DATA)");
        return;
    };
    // The first 60 records of the shared folder, linked into a folder of their own.
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read_to_string(cinc.join("REFERENCE.csv")).unwrap();
    let lines: Vec<&str> = reference.lines().take(60).collect();
    for line in &lines {
        let name = line.split(',').next().unwrap();
        for ext in ["hea", "mat"] {
            let f = format!("{name}.{ext}");
            std::os::unix::fs::symlink(cinc.join(&f), dir.path().join(&f)).unwrap();
        }
    }
    std::fs::write(dir.path().join("REFERENCE.csv"), lines.join("\n") + "\n").unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let labels = |extra: &[&str], out: &str| -> String {
        let out = dir.path().join(out);
        let (db, o) = (dir.path().to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["--db", db, "--out", o];
        args.extend_from_slice(extra);
        run(&parse(&args).unwrap()).unwrap();
        std::fs::read_to_string(out).unwrap()
    };
    let models_arg = models.to_str().unwrap();
    let af_cnn = models.join("af-cnn/af_cnn.toml");
    let by_default = labels(&["--models", models_arg], "default.csv");
    let by_manifest = labels(&["--model", af_cnn.to_str().unwrap()], "model.csv");
    let by_rule = labels(&["--rule"], "rule.csv");
    // No --models either: `models` in the working directory, else the source tree's.
    let bundled = labels(&[], "bundled.csv");
    assert_eq!(by_default.lines().count(), 60);
    assert_eq!(
        by_default, by_manifest,
        "eval af without --model is not the active model (af-cnn)"
    );
    assert_ne!(
        by_default, by_rule,
        "the model and the RR rule agree on all 60 records"
    );
    assert_eq!(
        bundled, by_manifest,
        "the bundled models' active AF model is not af-cnn"
    );
}
