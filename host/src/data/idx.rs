//! Parsers of the IDX format (MNIST, Fashion-MNIST) and the CIFAR-10 binary format.

use super::{DataError, ImageSet};

fn bad(path: &str, reason: String) -> DataError {
    DataError::Format { path: path.into(), reason }
}

fn be_u32(bytes: &[u8], at: usize, path: &str) -> Result<u32, DataError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad(path, format!("truncated header ({} bytes)", bytes.len())))
}

/// An IDX image file (magic `0x00000803`): `(count, rows, cols, pixels)`.
pub fn parse_idx_images(
    bytes: &[u8],
    path: &str,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != 0x0803 {
        return Err(bad(
            path,
            format!("magic 0x{magic:08x}, expected 0x00000803 (IDX unsigned-byte images, 3 dims)"),
        ));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let h = be_u32(bytes, 8, path)? as usize;
    let w = be_u32(bytes, 12, path)? as usize;
    // A hostile header can claim more than fits in memory (or in a usize): checked arithmetic.
    let want = n.checked_mul(h).and_then(|p| p.checked_mul(w)).and_then(|p| p.checked_add(16));
    let Some(want) = want else {
        return Err(bad(
            path,
            format!(
                "header claims {n} images of {h}×{w}, more bytes than this machine can address \
                 (the file has {})",
                bytes.len()
            ),
        ));
    };
    if bytes.len() != want {
        return Err(bad(
            path,
            format!(
                "{} bytes, expected {want} for {n} images of {h}×{w} ({})",
                bytes.len(),
                if bytes.len() < want { "truncated" } else { "trailing bytes" }
            ),
        ));
    }
    Ok((n, h, w, bytes[16..].to_vec()))
}

/// An IDX label file (magic `0x00000801`).
pub fn parse_idx_labels(bytes: &[u8], path: &str) -> Result<Vec<u8>, DataError> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != 0x0801 {
        return Err(bad(
            path,
            format!("magic 0x{magic:08x}, expected 0x00000801 (IDX unsigned-byte labels, 1 dim)"),
        ));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let Some(want) = n.checked_add(8) else {
        return Err(bad(path, format!("header claims {n} labels, more than fits in memory")));
    };
    if bytes.len() != want {
        return Err(bad(path, format!("{} bytes, expected {want} for {n} labels", bytes.len())));
    }
    Ok(bytes[8..].to_vec())
}

/// A CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (3×32×32).
pub fn parse_cifar10(bytes: &[u8], path: &str) -> Result<ImageSet, DataError> {
    const REC: usize = 1 + 3 * 32 * 32;
    if bytes.is_empty() || bytes.len() % REC != 0 {
        return Err(bad(
            path,
            format!("{} bytes is not a whole number of 3073-byte CIFAR-10 records", bytes.len()),
        ));
    }
    let n = bytes.len() / REC;
    let mut pixels = Vec::with_capacity(n * (REC - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(REC).enumerate() {
        if rec[0] > 9 {
            return Err(bad(path, format!("record {i}: label {} is not in 0..=9", rec[0])));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(ImageSet { name: path.into(), pixels, labels, shape: (3, 32, 32), classes: 10 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: u32, h: u32, w: u32) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            v.extend(d.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, (n * h * w) as usize));
        v
    }

    #[test]
    fn idx_round_trip_and_bad_files_name_the_problem() {
        let ok = images(3, 2, 2);
        assert_eq!(parse_idx_images(&ok, "x").unwrap().0, 3);
        let mut wrong = ok.clone();
        wrong[3] = 1;
        let e = parse_idx_images(&wrong, "imgs.idx").unwrap_err().to_string();
        assert!(e.contains("imgs.idx") && e.contains("magic 0x00000801"), "{e}");
        let e = parse_idx_images(&ok[..ok.len() - 1], "imgs.idx").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_idx_images(&ok[..6], "imgs.idx").unwrap_err().to_string();
        assert!(e.contains("truncated header"), "{e}");
        let labels = [0u8, 0, 8, 1, 0, 0, 0, 2, 1, 4];
        assert_eq!(parse_idx_labels(&labels, "l").unwrap(), vec![1, 4]);
        let e = parse_idx_labels(&labels[..9], "labels.idx").unwrap_err().to_string();
        assert!(e.contains("labels.idx") && e.contains("expected 10"), "{e}");
    }

    #[test]
    fn a_hostile_header_is_an_error_not_an_overflow() {
        // 2^32-1 images of 2^32-1 × 2^32-1 pixels: the product overflows u64.
        let mut hostile = vec![0, 0, 8, 3];
        for _ in 0..3 {
            hostile.extend(u32::MAX.to_be_bytes());
        }
        hostile.extend([1, 2, 3]);
        let e = parse_idx_images(&hostile, "evil.idx").unwrap_err().to_string();
        assert!(e.contains("evil.idx") && e.contains("4294967295 images"), "{e}");
        // Large but representable: a clear size mismatch.
        let mut big = vec![0, 0, 8, 3];
        for d in [100_000u32, 100_000, 1] {
            big.extend(d.to_be_bytes());
        }
        let e = parse_idx_images(&big, "big.idx").unwrap_err().to_string();
        assert!(e.contains("big.idx") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn label_count_must_match_image_count() {
        let labels = [0u8, 0, 8, 1, 0, 0, 0, 2, 1, 4];
        let e = super::super::idx_pair(&images(3, 2, 2), &labels, ("i.idx", "l.idx"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("l.idx") && e.contains("2 labels for 3 images"), "{e}");
    }

    #[test]
    fn cifar10_records() {
        let mut rec = vec![3u8];
        rec.extend(vec![9u8; 3072]);
        let set = parse_cifar10(&rec.repeat(2), "b.bin").unwrap();
        assert_eq!(set.labels, vec![3, 3]);
        let e = parse_cifar10(&rec[..100], "b.bin").unwrap_err().to_string();
        assert!(e.contains("b.bin") && e.contains("3073"), "{e}");
        rec[0] = 12;
        let e = parse_cifar10(&rec, "b.bin").unwrap_err().to_string();
        assert!(e.contains("label 12"), "{e}");
    }
}
