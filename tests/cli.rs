//! The binary's first five minutes: `--help` everywhere, usage and config errors exit 2 and name
//! the problem, `up` without root switches off what needs root and keeps running, and the
//! rule commands work on the shipped pack.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_is_there_for_every_command() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["collector", "--help"],
        vec!["agent", "--help"],
        vec!["incidents", "--help"],
        vec!["incidents", "list", "--help"],
        vec!["rules", "check", "--help"],
        vec!["rules", "test", "--help"],
    ] {
        let (code, out, _) = run(&args);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    let (_, out, _) = run(&["up", "--help"]);
    for flag in [
        "--data-dir",
        "--http-addr",
        "--otlp-addr",
        "--webhook",
        "--config",
    ] {
        assert!(out.contains(flag), "up --help lacks {flag}");
    }
}

#[test]
fn bad_flags_and_bad_config_exit_2_and_name_the_problem() {
    let (code, _, err) = run(&["up", "--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(err.contains("--no-such-flag"), "{err}");

    let (code, _, err) = run(&["up", "--http-addr", "not-an-address"]);
    assert_eq!(code, 2);
    assert!(err.contains("--http-addr"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("daytwo.yaml");
    std::fs::write(
        &cfg,
        "collector:\n  http_addr: 127.0.0.1:0\n  recievers: []\n",
    )
    .unwrap();
    let (code, _, err) = run(&["collector", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("daytwo.yaml") && err.contains("recievers"),
        "{err}"
    );
    assert!(
        err.contains("line 3") || err.contains(":3:"),
        "names the line: {err}"
    );

    let (code, _, err) = run(&[
        "collector",
        "--webhook",
        "ftp://pager.example",
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ftp://pager.example"), "{err}");

    let (code, _, err) = run(&["agent", "--collector", "collector:4317"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--collector"), "{err}");
}

#[test]
fn incidents_cli_says_where_it_could_not_connect() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let (code, _, err) = run(&["incidents", "list", "--server", &server]);
    assert_eq!(code, 1);
    assert!(err.contains(&server), "{err}");
}

#[test]
fn shipped_rules_check_and_their_tests_pass() {
    let packs = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/packs");
    let (code, out, err) = run(&["rules", "check", packs]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (code, out, err) = run(&["rules", "test", packs]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn rules_check_reports_file_line_col() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.yaml");
    std::fs::write(
        &f,
        "rules:\n  - id: my.rule\n    severity: critical\n    title: t\n    match:\n      event: x\n      conditon: 'true'\n    root_cause:\n      entity: signal\n      score: 0.5\n      explanation: e\n      remediation: r\n",
    )
    .unwrap();
    let (code, _, err) = run(&["rules", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.yaml:7:"), "file:line:col in {err}");
    assert!(err.contains("conditon"), "{err}");
}

#[test]
fn up_without_root_says_what_is_off_and_keeps_running() {
    use std::os::unix::process::CommandExt;
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run as we are.
        eprintln!("note: running unprivileged already");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Let the unprivileged user write its data dir.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let log = tmp.path().join("up.log");
    let logf = std::fs::File::create(&log).unwrap();
    // The unprivileged user may not be able to reach the build directory (a 0700 checkout):
    // run a copy from the world-readable temp dir.
    let exe = tmp.path().join("daytwo");
    std::fs::copy(bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args([
        "up",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(logf);
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.starts_with("listening http="),
        "{line:?}; log:\n{}",
        read(&log)
    );
    let http = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("http=")
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || get(&format!(
            "http://{http}/readyz"
        ))
        .is_some_and(|(c, _)| c == 200)),
        "not ready; log:\n{}",
        read(&log)
    );
    let text = read(&log);
    // With dmesg_restrict=1 (the usual setting) only privileged users may read the kernel log.
    let restricted = read(std::path::Path::new("/proc/sys/kernel/dmesg_restrict")).trim() == "1";
    if restricted {
        assert!(
            text.contains("/dev/kmsg"),
            "one warning names the kmsg source:\n{text}"
        );
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "clean stop on SIGTERM: {status:?}; log:\n{}",
        read(&log)
    );
}
