use super::*;

#[test]
fn non_utf8_points_at_line() {
    let e = text_or_error(b"mode = \"auto\"\n# \xff\n").unwrap_err();
    assert_eq!(e.line, 2);
}

/// tests/fixtures/bad-toml: each file's first line says `# expect: LINE: text`; the
/// error is one line, `path:LINE: ...text...`. (The UCI corpus is in openwrt_tests.)
#[test]
fn malformed_toml_files_name_file_line_and_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-toml");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let first =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap()).into_owned();
        let (line, text) = match first.strip_prefix("# expect: ") {
            Some(x) => x.split_once(": ").unwrap(),
            None => ("1", "the file is empty"),
        };
        let e = load_toml(&path)
            .expect_err(&path.display().to_string())
            .to_string();
        assert!(
            e.starts_with(&format!("{}:{line}: ", path.display())),
            "{e}"
        );
        assert!(e.contains(text.trim()), "{}: {e}", path.display());
        assert_eq!(e.lines().count(), 1, "{e}");
        count += 1;
    }
    assert!(count >= 20, "{count}");
}

#[test]
fn error_display_has_file_and_line() {
    let e = ConfigError::Invalid {
        path: "/etc/offloadd/offloadd.toml".into(),
        line: 7,
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "/etc/offloadd/offloadd.toml:7: bad");
}
