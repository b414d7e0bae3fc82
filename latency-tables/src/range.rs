//! `F64Range`: the allowed values of a floating-point setting, checked when a command line is
//! parsed and when a [`crate::Method`] is validated.

use std::fmt;

/// An interval of finite `f64` values: `[min, max]`, or `(min, max]` when `min_exclusive`.
///
/// NaN and ±∞ are never inside. With the `cli` feature it is also a clap value parser: a flag
/// declared with `value_parser = SOME_RANGE` rejects a bad value while the command line is
/// parsed, and clap exits with code 2 naming the flag, the value and the range:
///
/// ```text
/// error: invalid value 'inf' for '--pass-secs <PASS_SECS>': expected a finite number in [0, 3600]
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F64Range {
    /// The lower bound.
    pub min: f64,
    /// Whether `min` itself is outside the range.
    pub min_exclusive: bool,
    /// The upper bound (inside the range).
    pub max: f64,
}

impl F64Range {
    /// `[min, max]`.
    pub const fn closed(min: f64, max: f64) -> Self {
        F64Range { min, min_exclusive: false, max }
    }

    /// `(min, max]`: for values that must be strictly above `min` (timeouts, learning rates).
    pub const fn above(min: f64, max: f64) -> Self {
        F64Range { min, min_exclusive: true, max }
    }

    /// Whether `value` is finite and inside the range.
    pub fn contains(&self, value: f64) -> bool {
        let above_min = if self.min_exclusive { value > self.min } else { value >= self.min };
        value.is_finite() && above_min && value <= self.max
    }

    /// Parses `text` as a number inside the range; the error says what is expected.
    pub fn parse(&self, text: &str) -> Result<f64, String> {
        match text.trim().parse::<f64>() {
            Ok(value) if self.contains(value) => Ok(value),
            _ => Err(format!("expected a finite number in {self}")),
        }
    }
}

impl fmt::Display for F64Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = if self.min_exclusive { '(' } else { '[' };
        write!(f, "{open}{}, {}]", self.min, self.max)
    }
}

#[cfg(feature = "cli")]
impl clap::builder::TypedValueParser for F64Range {
    type Value = f64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<f64, clap::Error> {
        // Delegate to clap's function parser, whose error names the flag and the value.
        let range = *self;
        (move |text: &str| range.parse(text)).parse_ref(cmd, arg, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_out_of_range_values_are_rejected() {
        let secs = F64Range::above(0.0, 3600.0);
        for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1e400", "0", "-1", "3600.5", "x", ""]
        {
            let err = secs.parse(bad).unwrap_err();
            assert!(err.contains("(0, 3600]"), "{bad}: {err}");
        }
        assert_eq!(secs.parse("0.5"), Ok(0.5));
        assert_eq!(secs.parse("3600"), Ok(3600.0));
        let closed = F64Range::closed(-1.0, 1.0);
        assert_eq!(closed.parse("-1"), Ok(-1.0));
        assert!(!closed.contains(f64::NAN));
        assert_eq!(closed.to_string(), "[-1, 1]");
    }
}
