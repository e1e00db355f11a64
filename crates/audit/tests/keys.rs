//! The signing key: outside the log directory, private, checked at open, and the key
//! `verify` uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;
use palisade_audit::{AuditConfig, AuditError, AuditLog, KeySource, PublicKey, VerifyOptions, verify};

#[test]
fn the_key_lives_outside_the_log_directory() {
    let dir = log_dir();
    let public = runtime().block_on(async {
        let log = AuditLog::open(dir.path(), small("r")).unwrap();
        log.append(request(0)).await.unwrap();
        assert_eq!(log.signing_key(), dir.key());
        assert_eq!(log.log_id().len(), 32);
        log.close().await.unwrap();
        log.public_key()
    });
    let names: BTreeSet<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let expected: BTreeSet<String> =
        [".lock", "checkpoints.jsonl", "segment-00000000000000000000.jsonl"].map(String::from).into();
    assert_eq!(names, expected, "records and checkpoints only");
    assert_eq!(PublicKey::from_file(&dir.public_key()).unwrap(), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.key()), 0o600);
        assert_eq!(mode(dir.key().parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.public_key()), 0o644);
    }
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
    assert_eq!(report.key_id, Some(public.key_id()));
    assert_eq!(report.key_source, Some(dir.public_key().display().to_string()));
    assert!(report.to_string().contains(&format!(
        "key: {} ({})",
        public.key_id(),
        dir.public_key().display()
    )));
}

#[cfg(unix)]
#[test]
fn unsafe_keys_are_refused_at_open_naming_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = log_dir();
    write_log(dir.path(), small("r"), 2);
    let chmod =
        |p: &std::path::Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    let open_err = || AuditLog::open(dir.path(), small("r")).unwrap_err();

    chmod(&dir.key(), 0o640);
    let err = open_err();
    assert!(matches!(err, AuditError::InsecureKey { .. }), "{err}");
    assert!(err.to_string().contains(&format!("fix: chmod 600 {}", dir.key().display())), "{err}");
    chmod(&dir.key(), 0o600);

    let keys = dir.key().parent().unwrap().to_owned();
    chmod(&keys, 0o770);
    assert!(open_err().to_string().contains(&format!("fix: chmod 700 {}", keys.display())));
    chmod(&keys, 0o700);

    let real = dir.home().join("elsewhere.pk8");
    fs::rename(dir.key(), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.key()).unwrap();
    assert!(open_err().to_string().contains("symbolic link"));
    fs::remove_file(dir.key()).unwrap();
    fs::rename(&real, dir.key()).unwrap();

    // A key configured inside the log directory is refused before anything is written.
    let inside = AuditConfig { signing_key: Some(dir.path().join("key.pk8")), ..small("r") };
    let err = AuditLog::open(dir.path(), inside).unwrap_err();
    assert!(err.to_string().contains("inside the log directory"), "{err}");
    assert!(!dir.path().join("key.pk8").exists());
    write_log(dir.path(), small("r"), 1);
}

#[test]
fn an_existing_log_needs_its_own_key() {
    let dir = log_dir();
    write_log(dir.path(), small("r"), 2);
    let keys = dir.key().parent().unwrap().to_owned();
    let saved = dir.home().join("saved");
    fs::rename(&keys, &saved).unwrap();

    // Missing: refused, and no new key is made for an old log.
    let err = AuditLog::open(dir.path(), small("r")).unwrap_err();
    assert!(matches!(err, AuditError::Key(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("missing") && text.contains("restore that key"), "{text}");
    assert!(text.contains("move the log directory aside"), "{text}");
    assert!(!dir.key().exists(), "a key was created for a log it did not start");

    // Another key: refused, naming both.
    let other = log_dir();
    write_log(other.path(), small("r"), 0);
    fs::create_dir(&keys).unwrap();
    fs::copy(other.key(), dir.key()).unwrap();
    let err = AuditLog::open(dir.path(), small("r")).unwrap_err();
    let other_id = PublicKey::from_file(&other.public_key()).unwrap().key_id();
    assert!(err.to_string().contains(&format!("this is key {other_id}")), "{err}");

    // Restored: it opens.
    fs::remove_dir_all(&keys).unwrap();
    fs::rename(&saved, &keys).unwrap();
    write_log(dir.path(), small("r"), 1);
    assert!(verify(dir.path(), &VerifyOptions::default()).unwrap().ok);
}

#[test]
fn a_key_elsewhere_and_the_key_verify_uses() {
    let dir = log_dir();
    let key = dir.home().join("secrets").join("audit.pk8");
    write_log(dir.path(), AuditConfig { signing_key: Some(key.clone()), ..small("r") }, 3);
    let public_file = dir.home().join("secrets").join("audit.pub");
    let public = PublicKey::from_file(&public_file).unwrap();

    // Not at the default place: verify says where it looked and what to pass.
    let err = verify(dir.path(), &VerifyOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::Key(_)), "{err}");
    assert!(err.to_string().contains(&dir.public_key().display().to_string()), "{err}");
    assert!(err.to_string().contains("--public-key"), "{err}");

    for source in [KeySource::File(public_file.clone()), KeySource::Pinned(public)] {
        let report = verify(dir.path(), &VerifyOptions { key: source, ..VerifyOptions::default() }).unwrap();
        assert!(report.ok && report.key_id == Some(public.key_id()), "{report}");
    }
    let wrong = log_dir();
    write_log(wrong.path(), small("r"), 0);
    let pinned = PublicKey::from_file(&wrong.public_key()).unwrap();
    let report =
        verify(dir.path(), &VerifyOptions { key: KeySource::Pinned(pinned), ..VerifyOptions::default() })
            .unwrap();
    assert!(report.first_problem.unwrap().what.contains("not the expected key"));
}
