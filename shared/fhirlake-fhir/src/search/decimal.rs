//! Decimal numbers with their precision (`search.html#number`): `100` stands for the range
//! `[99.5, 100.5)`, `100.00` for `[99.995, 100.005)` and `1e2` for `[50, 150)`. Values are exact:
//! a mantissa and a power of ten, never a float.

use std::cmp::Ordering;

/// Largest number of significant digits kept (more are refused by [`Decimal::parse`]).
const MAX_DIGITS: usize = 30;

/// An exact decimal `mantissa × 10^exponent`; the exponent also records the precision written
/// (`1.50` is 150 × 10⁻²).
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    exponent: i32,
}

impl Decimal {
    /// Parses a FHIR decimal or integer, or a search number (which may use `e` notation):
    /// `-12`, `0.50`, `1e2`, `1.5E-3`. `None` for anything else or more than 30 digits.
    pub fn parse(text: &str) -> Option<Self> {
        let (number, exp) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, unsigned) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if unsigned.contains('.') && fraction.is_empty() {
            return None;
        }
        let digits = format!("{whole}{fraction}");
        if digits.trim_start_matches('0').len() > MAX_DIGITS || exp.abs() > 10_000 {
            return None;
        }
        let magnitude: i128 = digits.parse().ok()?;
        let exponent = exp.checked_sub(i32::try_from(fraction.len()).ok()?)?;
        Some(Decimal { mantissa: if negative { -magnitude } else { magnitude }, exponent })
    }

    /// The number of a JSON value, as serde_json prints it.
    pub fn from_json(number: &serde_json::Number) -> Option<Self> {
        Self::parse(&number.to_string())
    }

    /// The implicit range of the value: half a unit of its last digit either side,
    /// `(low, high)`; the value is in `[low, high)`.
    pub fn bounds(&self) -> (Decimal, Decimal) {
        let ten = Decimal { mantissa: self.mantissa.saturating_mul(10), exponent: self.exponent - 1 };
        (Decimal { mantissa: ten.mantissa - 5, ..ten }, Decimal { mantissa: ten.mantissa + 5, ..ten })
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value multiplied by `factor` (exact; `None` on overflow).
    pub fn scaled(&self, factor: &Decimal) -> Option<Decimal> {
        Some(Decimal { mantissa: self.mantissa.checked_mul(factor.mantissa)?, exponent: self.exponent.checked_add(factor.exponent)? })
    }

    /// The absolute value.
    pub fn abs(&self) -> Decimal {
        Decimal { mantissa: self.mantissa.abs(), exponent: self.exponent }
    }

    /// The sum (exact when the exponents align within i128; `None` on overflow).
    pub fn add(&self, other: &Decimal) -> Option<Decimal> {
        let exponent = self.exponent.min(other.exponent);
        let a = rescale(self.mantissa, self.exponent - exponent)?;
        let b = rescale(other.mantissa, other.exponent - exponent)?;
        Some(Decimal { mantissa: a.checked_add(b)?, exponent })
    }

    /// The difference `self - other`.
    pub fn sub(&self, other: &Decimal) -> Option<Decimal> {
        self.add(&Decimal { mantissa: -other.mantissa, exponent: other.exponent })
    }

    /// An approximate float, for diagnostics only.
    pub fn to_f64(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent)
    }

    /// A string whose byte order is the numeric order of the values (equal values, whatever
    /// their precision, give equal keys). Used as the sort key of ordered index entries.
    ///
    /// Layout: a sign class (`M` negative, `N` zero, `P` positive), then for non-zero values the
    /// decimal exponent of the leading digit biased by 5000 (four digits; inverted for negatives)
    /// and the significant digits without trailing zeros (nine's complement, ended by `~`, for
    /// negatives). Every key ends before any `#`-separated suffix sorts wrongly: `#` sorts below
    /// every digit and `~` above.
    pub fn order_key(&self) -> String {
        if self.mantissa == 0 {
            return "N".into();
        }
        let mut digits = self.mantissa.unsigned_abs().to_string();
        let mut exponent = self.exponent;
        while digits.ends_with('0') {
            digits.pop();
            exponent += 1;
        }
        let leading = exponent + digits.len() as i32;
        if self.mantissa > 0 {
            format!("P{:04}{digits}", (leading + 5000).clamp(0, 9999))
        } else {
            let complement: String = digits.bytes().map(|b| char::from(b'9' - (b - b'0'))).collect();
            format!("M{:04}{complement}~", (5000 - leading).clamp(0, 9999))
        }
    }
}

/// `m × 10^shift` for a non-negative shift.
fn rescale(m: i128, shift: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(shift).ok()?).and_then(|p| m.checked_mul(p))
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |m: i128| m.signum();
        if sign(self.mantissa) != sign(other.mantissa) {
            return sign(self.mantissa).cmp(&sign(other.mantissa));
        }
        // Same sign: compare the mantissas at a common exponent, without allocating; only when
        // that would overflow (exponents far apart), by the order keys, which are exact too.
        let exponent = self.exponent.min(other.exponent);
        match (rescale(self.mantissa, self.exponent - exponent), rescale(other.mantissa, other.exponent - exponent)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.order_key().cmp(&other.order_key()),
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if self.exponent >= 0 {
            write!(f, "{sign}{digits}{}", "0".repeat(self.exponent as usize))
        } else {
            let places = (-self.exponent) as usize;
            let padded = format!("{digits:0>width$}", width = places + 1);
            let (whole, fraction) = padded.split_at(padded.len() - places);
            write!(f, "{sign}{whole}.{fraction}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect("a decimal")
    }

    #[test]
    fn parses_fhir_decimals_and_search_numbers() {
        assert_eq!(d("100").to_string(), "100");
        assert_eq!(d("0.50").to_string(), "0.50");
        assert_eq!(d("-12.5").to_string(), "-12.5");
        assert_eq!(d("1e2").to_string(), "100");
        assert_eq!(d("1.5E-3").to_string(), "0.0015");
        for bad in ["", "-", "1.", ".5", "1e", "one", "1,5", "--1", "1.2.3", "0x10"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        assert!(Decimal::parse(&"9".repeat(31)).is_none());
    }

    #[test]
    fn precision_gives_the_implicit_range() {
        // search.html#number: "100" is [99.5, 100.5), "100.00" is [99.995, 100.005), "1e2" is [50, 150).
        let (lo, hi) = d("100").bounds();
        assert_eq!((lo, hi), (d("99.5"), d("100.5")));
        let (lo, hi) = d("100.00").bounds();
        assert_eq!((lo, hi), (d("99.995"), d("100.005")));
        let (lo, hi) = d("1e2").bounds();
        assert_eq!((lo, hi), (d("50"), d("150")));
    }

    #[test]
    fn comparison_is_exact_and_ignores_precision() {
        assert_eq!(d("1.0"), d("1"));
        assert_eq!(d("100"), d("1e2"));
        assert!(d("0.1") < d("0.11"));
        assert!(d("-0.123") < d("-0.12"));
        assert!(d("-5") < d("0") && d("0") < d("0.0001"));
        assert!(d("99.999") < d("100"));
        // Exponents too far apart for a common mantissa still compare exactly.
        assert!(d("1e-40") < d("1e40") && d("-1e40") < d("-1e-40"));
        assert_eq!(d("1e29").cmp(&d("100000000000000000000000000000")), Ordering::Equal);
    }

    #[test]
    fn order_keys_sort_as_the_numbers_do() {
        let mut values: Vec<Decimal> =
            ["-1000", "-12.5", "-12", "-0.123", "-0.12", "0", "0.0001", "0.12", "0.123", "1", "9.99", "10", "12.5", "1e3", "123456789"]
                .iter()
                .map(|s| d(s))
                .collect();
        let sorted = values.clone();
        values.reverse();
        values.sort_by_key(|v| v.order_key() + "#id");
        assert_eq!(values, sorted);
        assert_eq!(d("1.50").order_key(), d("1.5").order_key());
    }

    #[test]
    fn arithmetic() {
        assert_eq!(d("1.5").add(&d("2.25")), Some(d("3.75")));
        assert_eq!(d("1").sub(&d("0.1")), Some(d("0.9")));
        assert_eq!(d("100").scaled(&d("0.1")), Some(d("10")));
    }
}
