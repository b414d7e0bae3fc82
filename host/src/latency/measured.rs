//! `MeasuredTable`: T(α) = Σ median over the architecture's op keys (+ optional affine correction).

use latency_tables::LatencyTable;

use super::{Breakdown, BreakdownRow, LatencyError, LatencyModel};
use crate::space::{Architecture, SearchSpace};

/// A measured latency table used as a latency model for one space at one resolution.
#[derive(Debug, Clone)]
pub struct MeasuredTable {
    table: LatencyTable,
    name: String,
    space: SearchSpace,
    resolution: u32,
}

impl MeasuredTable {
    /// Wraps a loaded table; `name` (usually its path) is used in messages.
    pub fn new(table: LatencyTable, name: &str, space: SearchSpace, resolution: u32) -> Self {
        MeasuredTable { table, name: name.to_string(), space, resolution }
    }

    /// The table.
    pub fn table(&self) -> &LatencyTable {
        &self.table
    }
}

impl LatencyModel for MeasuredTable {
    fn describe(&self) -> String {
        format!("table {}", self.name)
    }

    fn precision(&self) -> latency_tables::Precision {
        self.table.precision()
    }

    fn breakdown(&self, arch: &Architecture) -> Result<Breakdown, LatencyError> {
        let resolved =
            self.space.resolve(arch, self.resolution).with_precision(self.table.precision());
        let mut rows = Vec::new();
        let mut missing = Vec::new();
        let mut sum_us = 0.0;
        for layer in &resolved.layers {
            let Some(key) = &layer.key else { continue };
            match self.table.get(key) {
                Some(entry) => {
                    sum_us += entry.median;
                    rows.push(BreakdownRow {
                        name: layer.name.clone(),
                        key: Some(key.to_string()),
                        ms: entry.median / 1e3,
                    });
                }
                None => missing.push(key.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(LatencyError::MissingKeys { table: self.name.clone(), keys: missing });
        }
        let total_us = match &self.table.correction {
            Some(c) => {
                let corrected = c.apply(sum_us);
                rows.push(BreakdownRow {
                    name: "correction".into(),
                    key: None,
                    ms: (corrected - sum_us) / 1e3,
                });
                corrected
            }
            None => sum_us,
        };
        Ok(Breakdown { rows, total_ms: total_us / 1e3 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Correction, Entry, Fingerprint, LatencyStats, Method};

    fn table_for(space: &SearchSpace, arch: &Architecture, skip_last: usize) -> LatencyTable {
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        let net = space.resolve(arch, 224).network;
        for key in net.layers.iter().take(net.layers.len() - skip_last) {
            let v = fake_us(key);
            t.insert(Entry::new(
                key.clone(),
                LatencyStats::from_samples(&[v]).unwrap(),
                0.0,
                false,
            ));
        }
        t
    }

    fn fake_us(key: &latency_tables::OpKey) -> f64 {
        100.0 + key.macs() as f64 / 1e4
    }

    #[test]
    fn sums_medians_and_applies_correction() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        let mut table = table_for(&space, &arch, 0);
        let expected_us: f64 = space.resolve(&arch, 224).network.layers.iter().map(fake_us).sum();
        let model = MeasuredTable::new(table.clone(), "t.json", space.clone(), 224);
        assert!((model.latency_ms(&arch).unwrap() - expected_us / 1e3).abs() < 1e-9);
        table.correction = Some(Correction { scale: 1.1, offset_us: 500.0, samples: 10 });
        let model = MeasuredTable::new(table, "t.json", space, 224);
        let b = model.breakdown(&arch).unwrap();
        assert!((b.total_ms - (1.1 * expected_us + 500.0) / 1e3).abs() < 1e-9);
        let row_sum: f64 = b.rows.iter().map(|r| r.ms).sum();
        assert!((row_sum - b.total_ms).abs() < 1e-9);
    }

    #[test]
    fn an_int8_table_prices_the_int8_keys_of_an_architecture() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        let mut table = LatencyTable::new(Fingerprint::default(), Method::default());
        for key in space.resolve(&arch, 224).network.layers {
            let key = key.with_precision(latency_tables::Precision::I8);
            let stats = LatencyStats::from_samples(&[2.0 * fake_us(&key)]).unwrap();
            table.insert(Entry::new(key, stats, 0.0, false));
        }
        let expected_ms: f64 =
            space.resolve(&arch, 224).network.layers.iter().map(|k| 2.0 * fake_us(k)).sum::<f64>()
                / 1e3;
        let model = MeasuredTable::new(table, "i8.json", space.clone(), 224);
        assert_eq!(model.precision(), latency_tables::Precision::I8);
        let b = model.breakdown(&arch).unwrap();
        assert!((b.total_ms - expected_ms).abs() < 1e-9);
        assert!(b.rows.iter().all(|r| r.key.as_deref().is_none_or(|k| k.ends_with("/i8"))));
        // A float table prices the float keys.
        let f32 = MeasuredTable::new(table_for(&space, &arch, 0), "f32.json", space, 224);
        assert_eq!(f32.precision(), latency_tables::Precision::F32);
        assert!(f32.latency_ms(&arch).is_ok());
    }

    #[test]
    fn missing_keys_are_all_listed_never_zero() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        let model = MeasuredTable::new(table_for(&space, &arch, 2), "t.json", space, 224);
        let err = model.latency_ms(&arch).unwrap_err().to_string();
        assert!(err.contains("t.json has no entry for 2 key(s)"), "{err}");
        assert!(err.contains("pool/7x7x1280") && err.contains("fc/1x1x1280/o1001"), "{err}");
    }
}
