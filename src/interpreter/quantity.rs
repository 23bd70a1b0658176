//! Kubernetes resource quantities (`500m`, `2`, `4Gi`, `1.5`, `1e3`), checked
//! with the API server's grammar so a bad value fails in the cell, not at
//! submit time.
//!
//! ```text
//! quantity  ::= number suffix
//! suffix    ::= binarySI | decimalExponent | decimalSI
//! binarySI  ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= ("e" | "E") signedDigits
//! number    ::= ["+"] (digits | digits "." [digits] | "." digits)
//! ```
//! Resource requests cannot be negative, so a leading `-` is refused.

use super::params::Quantity;

const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL: [&str; 9] = ["n", "u", "m", "k", "M", "G", "T", "P", "E"];

/// Validates `s` as a non-negative Kubernetes quantity.
///
/// # Errors
/// A sentence saying what is wrong, e.g. `unknown suffix "gb" (use Gi, Mi, m, …)`.
pub fn parse(s: &str) -> Result<Quantity, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.starts_with('-') {
        return Err("it is negative".into());
    }
    let body = t.strip_prefix('+').unwrap_or(t);
    let num_len = body.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (number, suffix) = body.split_at(num_len);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || number.bytes().filter(|b| *b == b'.').count() > 1 {
        return Err(format!("{t:?} does not start with a number"));
    }
    let suffix_ok = suffix.is_empty()
        || BINARY.contains(&suffix)
        || DECIMAL.contains(&suffix)
        || is_exponent(suffix);
    if !suffix_ok {
        return Err(format!("unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti for bytes, m for millicores, k, M, G, or an exponent like e3)"));
    }
    Ok(Quantity(t.to_string()))
}

fn is_exponent(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('e').or_else(|| s.strip_prefix('E')) else {
        return false;
    };
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_quantities() {
        for q in ["1", "500m", "2Gi", "0.5", "1.5Gi", "100Mi", "1e3", "1E-2", "+2", ".5", "2.", "10k", "4G", "0"] {
            assert_eq!(parse(q).unwrap().0, q, "{q}");
        }
    }

    #[test]
    fn invalid_quantities_say_why() {
        assert!(parse("2gb").unwrap_err().contains("unknown suffix \"gb\""));
        assert!(parse("lots").unwrap_err().contains("does not start with a number"));
        assert!(parse("-1").unwrap_err().contains("negative"));
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("1.2.3").is_err());
        assert!(parse("2 Gi").is_err());
        assert!(parse("1e").is_err());
        assert!(parse("GI").is_err());
    }
}
