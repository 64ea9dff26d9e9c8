//! The engine binary parses the same command line as `anydepth` (and building this test
//! makes cargo build the binary, which the `anydepth` package's end-to-end tests run).

use std::process::Command;

#[test]
fn parses_the_anydepth_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_anydepth-torch"))
        .arg("--version")
        .output()
        .expect("anydepth-torch runs");
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("anydepth "), "{version}");

    let out = Command::new(env!("CARGO_BIN_EXE_anydepth-torch"))
        .args(["depth", "--batch", "0", "x.jpg", "--out", "o"])
        .output()
        .expect("anydepth-torch runs");
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("--batch must be at least 1"), "{message}");
}
