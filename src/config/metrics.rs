//! `[metrics]` (TOML) and `option metrics_*` (UCI): where the daemon publishes its
//! Prometheus metrics itself, besides `offloadd metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::shown;
use super::values::parse_duration;
use super::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Written atomically every `interval`, for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
    /// `/metrics` over HTTP on this address.
    pub listen: Option<SocketAddr>,
    pub interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            textfile: None,
            listen: None,
            interval: Duration::from_secs(15),
        }
    }
}

/// node_exporter (and prometheus-node-exporter-lua) read only `*.prom` files of their
/// textfile directory, so another name would be written and never collected.
pub fn check_textfile(v: &str) -> Result<PathBuf, String> {
    // Longer than PATH_MAX (4096 with its NUL), open() fails with ENAMETOOLONG; it would
    // also be shown whole by `status`.
    if v.len() >= 4096 {
        return Err(format!(
            "metrics textfile {} is longer than a path can be (4095 bytes)",
            shown(v)
        ));
    }
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(format!(
            "metrics textfile {} must be an absolute path, e.g. \"/var/prometheus/offloadd.prom\"",
            shown(v)
        ));
    }
    if p.extension().is_none_or(|e| e != "prom") {
        return Err(format!(
            "metrics textfile {} must end in .prom: the textfile collector reads only *.prom files",
            shown(v)
        ));
    }
    Ok(p)
}

/// An address and port; a bare port means loopback (metrics are for the scraper on
/// this machine unless an address says otherwise).
pub fn check_listen(v: &str) -> Result<SocketAddr, String> {
    let addr = match v.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => v.parse::<SocketAddr>().map_err(|_| {
            format!("metrics listen {} is not an address and port: use \"127.0.0.1:9811\" or \"[::1]:9811\"", shown(v))
        })?,
    };
    if addr.port() == 0 {
        return Err(format!(
            "metrics listen {} needs a port other than 0",
            shown(v)
        ));
    }
    Ok(addr)
}

pub fn check_interval(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("metrics interval must be between 100ms and 1h".into());
    }
    Ok(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    textfile: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

impl RawMetrics {
    /// Validates, each error on the line of its value (`at` maps a span to a line).
    pub(super) fn validate(
        self,
        at: impl Fn(std::ops::Range<usize>) -> usize,
    ) -> Result<MetricsConfig, ParseError> {
        fn one<T>(
            v: Option<Spanned<String>>,
            at: &impl Fn(std::ops::Range<usize>) -> usize,
            check: fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>, ParseError> {
            v.map(|v| check(v.get_ref()).map_err(|m| ParseError::new(at(v.span()), m)))
                .transpose()
        }
        let mut m = MetricsConfig {
            textfile: one(self.textfile, &at, check_textfile)?,
            listen: one(self.listen, &at, check_listen)?,
            ..MetricsConfig::default()
        };
        if let Some(i) = one(self.interval, &at, check_interval)? {
            m.interval = i;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textfile_must_be_absolute_and_collected() {
        assert!(check_textfile("/var/prometheus/offloadd.prom").is_ok());
        assert!(check_textfile("offloadd.prom")
            .unwrap_err()
            .contains("absolute"));
        assert!(check_textfile("/var/prometheus/offloadd.txt")
            .unwrap_err()
            .contains("*.prom"));
        assert!(check_textfile("/var/prometheus/").is_err());
    }

    #[test]
    fn listen_takes_an_address_or_a_loopback_port() {
        assert_eq!(
            check_listen("9811").unwrap(),
            "127.0.0.1:9811".parse().unwrap()
        );
        assert_eq!(
            check_listen("[::1]:9811").unwrap(),
            "[::1]:9811".parse().unwrap()
        );
        assert_eq!(
            check_listen("0.0.0.0:9811").unwrap(),
            "0.0.0.0:9811".parse().unwrap()
        );
        assert!(check_listen("localhost:9811")
            .unwrap_err()
            .contains("127.0.0.1:9811"));
        assert!(check_listen("127.0.0.1:0").unwrap_err().contains("port"));
    }

    #[test]
    fn toml_section_parses_and_its_errors_name_the_line() {
        let cfg = crate::config::parse_toml(
            "[metrics]\ntextfile = \"/var/prometheus/offloadd.prom\"\nlisten = \"9811\"\ninterval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.metrics,
            MetricsConfig {
                textfile: Some("/var/prometheus/offloadd.prom".into()),
                listen: Some("127.0.0.1:9811".parse().unwrap()),
                interval: Duration::from_secs(5),
            }
        );
        assert_eq!(
            crate::config::parse_toml("").unwrap().metrics,
            MetricsConfig::default()
        );
        for (text, line, needle) in [
            ("[metrics]\n\ntextfile = \"x.prom\"\n", 3, "absolute"),
            ("[metrics]\nlisten = \"9811x\"\n", 2, "address and port"),
            ("[metrics]\ninterval = \"1ms\"\n", 2, "100ms"),
            ("[metrics]\nport = 9811\n", 2, "unknown field"),
        ] {
            let e = crate::config::parse_toml(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(needle), "{text:?}: {:?}", e.message);
        }
    }

    #[test]
    fn interval_is_bounded() {
        assert_eq!(check_interval("15s"), Ok(Duration::from_secs(15)));
        assert!(check_interval("10ms").is_err());
        assert!(check_interval("2h").is_err());
    }
}
