//! Bad configuration stops start-up with exit code 2 and a message that
//! names the key and the accepted form.

use std::process::Command;

use crate::support::payhook_bin;

fn run_with(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(payhook_bin());
    cmd.arg("--config")
        .arg(&path)
        .args(["merchant", "list"])
        .current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_names_the_key() {
    let (code, err) = run_with("[delivery]\ntimeuot = \"5s\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("delivery.timeuot") && err.contains("unknown key"),
        "{err}"
    );
}

#[test]
fn bad_duration_names_key_and_form() {
    let (code, err) = run_with("[delivery]\ntimeout = \"ten seconds\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("delivery.timeout") && err.contains("\"10s\""),
        "{err}"
    );
}

#[test]
fn bad_database_url_names_accepted_forms() {
    let (code, err) = run_with("[database]\nurl = \"mysql://x\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("database.url") && err.contains("postgres://") && err.contains("mysql://x"),
        "{err}"
    );
}

#[test]
fn environment_override_is_validated_too() {
    let (code, err) = run_with("", &[("PAYHOOK__RETRY__BASE", "soon")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retry.base"), "{err}");
    let (code, err) = run_with("", &[("PAYHOOK__RETRY__JITTER", "1.5")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retry.jitter"), "{err}");
}

#[test]
fn missing_explicit_config_file_is_an_error() {
    let out = Command::new(payhook_bin())
        .args(["--config", "/nonexistent/payhook.toml", "merchant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("payhook init"));
}

#[test]
fn serve_requires_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(payhook_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("PAYHOOK__ADMIN__TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.token"));
}

#[test]
fn serve_without_a_secrets_key_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["serve", "worker", "scanner"] {
        let out = Command::new(payhook_bin())
            .arg(role)
            .current_dir(dir.path())
            .env(
                "PAYHOOK__ADMIN__TOKEN",
                "Zx8-plenty-of-random-characters-4Qw7eRt",
            )
            .env_remove("PAYHOOK__SECRETS__KEY")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{role}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("secrets.key") && err.contains("payhook init"),
            "{role}: {err}"
        );
    }
}

/// `payhook serve` raises its soft open-files limit to the hard one: a
/// busy sender and its admin clients need more than the usual 1,024.
#[test]
fn serve_raises_its_open_files_limit() {
    let env = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::support::Env::new());
    let config = crate::support::write_config(env.dir.path(), &env.cfg);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -S -n 256 && exec {} --config {} serve",
            payhook_bin(),
            config.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut raised = None;
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(&limits).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) {
            let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
            if nums.len() == 2 && nums[0] != "256" {
                raised = Some((nums[0].to_string(), nums[1].to_string()));
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (soft, hard) = raised.expect("the soft limit stayed at 256");
    assert_eq!(soft, hard, "soft limit raised to the hard one");
}
