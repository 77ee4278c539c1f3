//! Reading config files: a size cap before anything is parsed, UTF-8 checked, and the
//! path put in front of every error (`/etc/offloadd/offloadd.toml:12: ...`).

use std::path::Path;

use super::{parse_toml, Config, ConfigError, ParseError};

/// Largest TOML config file read. The TOML library builds a document of the whole file
/// before offloadd sees a value, at up to 25 bytes of memory a byte of dense lists (a
/// 4.6 MB file took 118 MB; 1 MiB of them, 28 MB). A hand-written config is a few KB; the
/// most a plan accepts (`plan::MAX_TOTAL_EXCLUDE_RULES` rules, at worst one entry each)
/// fits in well under 1 MiB.
pub const MAX_TOML_BYTES: usize = 1 << 20;
/// Largest UCI file read (each of offloadd, firewall and network). Our reader keeps 5 to
/// 30 bytes a byte (lists are cheap, many small sections dear: 8 MiB of the smallest
/// named sections took 127 MB). Looser than the TOML cap because the firewall and network
/// files are the system's: refusing one stops offloadd on a router that works otherwise.
/// OpenWrt's own files are a few KB.
pub const MAX_UCI_BYTES: usize = 8 << 20;

/// Reads at most `max` bytes of a config file; a longer file is refused on the line
/// where it passes `max`, without reading the rest.
pub(super) fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let read_error = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() > max {
        let line = 1 + bytes[..max].iter().filter(|&&b| b == b'\n').count();
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            line,
            message: format!("the file is larger than {max} bytes (it passes that on this line): a config file is a few KB; remove what it repeats"),
        });
    }
    Ok(bytes)
}

/// Reads and parses a TOML config file.
pub fn load_toml(path: &Path) -> Result<Config, ConfigError> {
    let bytes = read_capped(path, MAX_TOML_BYTES)?;
    let text = text_or_error(&bytes).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    if text.trim().is_empty() {
        // parse_toml("") is the defaults (no devices): from a file that is a mistake.
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            line: 1,
            message: "the file is empty: set [offload] devices (config/offloadd.toml in the source is an annotated example)".into(),
        });
    }
    parse_toml(text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    })
}

/// Config files must be UTF-8; point at the first line that is not.
pub(super) fn text_or_error(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ParseError::new(line, "not valid UTF-8 text (save the file as UTF-8)")
    })
}
