//! A missing ONNX Runtime library gives an error that says how to get it.
//! (Its own test binary: the runtime is loaded once per process.)

use ecg_inference::{OrtRuntime, RuntimeError};

#[test]
fn missing_library_error_says_how_to_install_it() {
    std::env::set_var("CARDIOSTREAM_ORT_LIB", "/nonexistent/libonnxruntime.so");
    let err = OrtRuntime::get().unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("scripts/setup-onnxruntime.sh"), "{msg}");
    assert!(
        msg.contains("CARDIOSTREAM_ORT_LIB=/nonexistent/libonnxruntime.so"),
        "{msg}"
    );
    assert!(msg.contains("onnxruntime PyPI wheel"), "{msg}");
}
