//! Byte counts and rates as people type and read them: binary units
//! everywhere, so the `10M` given to `--max-download-rate` shows as
//! `10.00 MiB/s`, never as `10.5 MB/s`.
//!
//! Parsing accepts `K`, `M`, `G`, `T` with an optional `B` or `iB` (`10M`,
//! `10MB`, `10MiB` are the same 10 × 2²⁰ bytes) and an optional `/s`; the
//! display is the one indicatif's `HumanBytes` uses (`1.50 MiB`), so the
//! progress bar, the listings and the logs agree.

use std::fmt;

/// Parses a byte count or rate: digits, optionally followed by `K`, `M`,
/// `G` or `T` (powers of 1024, case-insensitive) and then `B`, `iB`, and
/// `/s`; whitespace between the number and the unit is allowed. A bare `B`
/// (`500B`) is bytes.
///
/// # Errors
/// A sentence naming the bad value and the accepted forms.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("{s:?} is not a byte count; use digits with an optional unit, e.g. 500K, 10M, 10MiB, 2G")
    };
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A byte count shown with a binary prefix: `512 B`, `1.50 MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
        let mut value = self.0 as f64;
        if value < 1024.0 {
            return write!(f, "{} B", self.0);
        }
        let mut prefix = PREFIXES[0];
        for p in PREFIXES {
            value /= 1024.0;
            prefix = p;
            if value < 1024.0 {
                break;
            }
        }
        write!(f, "{value:.2} {prefix}B")
    }
}

/// A rate in bytes per second: `1.50 MiB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", Bytes(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_binary_unit_is_the_same_number() {
        for s in [
            "10M", "10m", "10MB", "10MiB", "10 MiB", "10mib", "10M/s", "10MiB/s",
        ] {
            assert_eq!(parse_bytes(s), Ok(10 << 20), "{s}");
        }
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1500"), Ok(1500));
        assert_eq!(parse_bytes("1500B"), Ok(1500));
        assert_eq!(parse_bytes("1k"), Ok(1024));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
    }

    #[test]
    fn nonsense_and_overflow_are_refused_with_the_value_named() {
        for bad in [
            "", "K", "1.5M", "-1", "1P", "12KiBs", "abc", "M10", "10 M B",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("17179869184G").is_err(), "overflow");
    }

    #[test]
    fn display_uses_binary_prefixes_like_indicatif() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1024).to_string(), "1.00 KiB");
        assert_eq!(Bytes(3 << 19).to_string(), "1.50 MiB");
        assert_eq!(Bytes(10 << 30).to_string(), "10.00 GiB");
        assert_eq!(Rate(10 << 20).to_string(), "10.00 MiB/s");
        assert_eq!(Bytes(u64::MAX).to_string(), "16.00 EiB");
    }
}
