//! The build script: spec/trainar.yaml → OUT_DIR, through the generator crate in `codegen/`
//! (trainar-codegen, a build-dependency). What is generated, and how, is that crate's business;
//! this file only says from where to where.

use std::path::Path;

const SPEC_PATH: &str = "spec/trainar.yaml";

fn main() {
    // A change in the generator rebuilds this script (and so reruns it) on its own.
    println!("cargo:rerun-if-changed={SPEC_PATH}");
    if let Ok(spec) = std::fs::read(SPEC_PATH) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&spec);
        println!("cargo:rustc-env=TRAINAR_SPEC_SHA256={digest:x}");
    }
    let generated = std::env::var("OUT_DIR")
        .map_err(|e| format!("OUT_DIR: {e}"))
        .and_then(|out_dir| trainar_codegen::generate(Path::new(SPEC_PATH), Path::new(&out_dir)));
    if let Err(message) = generated {
        // A build script reports through its exit status; the message is what a developer reads.
        eprintln!("error: {SPEC_PATH}: {message}");
        std::process::exit(1);
    }
}
