//! Image classification data for the proxy task: a [`Dataset`] trait, real loaders for the IDX
//! format (MNIST, Fashion-MNIST) and the CIFAR-10 binary format, the embedded Fashion-MNIST
//! subset, and a synthetic dataset for fast tests.
//!
//! Images are stored as bytes (`[C, H, W]` per image); batches are normalised `f32` tensors
//! `[N, C, S, S]` with each image zero-padded (after normalisation, as TF's `pad_to_bounding_box`
//! would pad the normalised input) to the square size `S` (28 → 32).

mod idx;

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::rng::Rng;

pub use idx::{parse_cifar10, parse_idx_images, parse_idx_labels};

/// Errors of data loading; each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it claims to be.
    #[error("{path}: {reason}")]
    Format {
        /// The file (or a description of embedded data).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The data argument names nothing known.
    #[error("{0}")]
    Spec(String),
}

/// A labelled image set.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(channels, height, width)` of every image.
    fn image_shape(&self) -> (usize, usize, usize);
    /// Number of classes.
    fn classes(&self) -> usize;
    /// The raw pixels of image `i` (`C·H·W` bytes, channel-major).
    fn pixels(&self, i: usize) -> &[u8];
    /// The label of image `i`.
    fn label(&self, i: usize) -> usize;
}

/// Images and labels in memory.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Where it came from.
    pub name: String,
    /// `C·H·W` bytes per image, concatenated.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// `(C, H, W)`.
    pub shape: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
}

impl ImageSet {
    fn image_bytes(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// The images at `indices`, as a new set.
    pub fn subset(&self, indices: &[usize], name: &str) -> ImageSet {
        let n = self.image_bytes();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        ImageSet {
            name: name.into(),
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// The first `len() − n` images and the last `n` (the held-out validation split).
    pub fn split_tail(&self, n: usize) -> Result<(ImageSet, ImageSet), DataError> {
        if n == 0 || n >= self.len() {
            return Err(DataError::Spec(format!(
                "{}: cannot hold out {n} of {} images for validation",
                self.name,
                self.len()
            )));
        }
        let cut = self.len() - n;
        let head: Vec<usize> = (0..cut).collect();
        let tail: Vec<usize> = (cut..self.len()).collect();
        Ok((
            self.subset(&head, &format!("{} [0, {cut})", self.name)),
            self.subset(&tail, &format!("{} [{cut}, {})", self.name, self.len())),
        ))
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.shape
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn pixels(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.pixels[i * n..(i + 1) * n]
    }
    fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }
}

/// A train split and a test split.
#[derive(Debug, Clone)]
pub struct Splits {
    /// What the data is (`fashion-mnist (embedded subset)`, a directory).
    pub name: String,
    /// The training split (train batches and the validation split are cut from it).
    pub train: ImageSet,
    /// The test split.
    pub test: ImageSet,
    /// Per-channel mean and std of the pixel values in [0, 1].
    pub mean_std: (f32, f32),
}

const EMBEDDED: [&[u8]; 4] = [
    include_bytes!("../../data/fashion-mnist/train-images-idx3-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist/train-labels-idx1-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
];

/// The IDX file names, in the order of [`EMBEDDED`].
const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn gunzip(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| {
            DataError::Format { path: what.into(), reason: format!("bad gzip: {e}") }
        })?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn idx_pair(
    images: &[u8],
    labels: &[u8],
    what: (&str, &str),
    name: &str,
) -> Result<ImageSet, DataError> {
    let (n, h, w, pixels) = parse_idx_images(&gunzip(images, what.0)?, what.0)?;
    let labels = parse_idx_labels(&gunzip(labels, what.1)?, what.1)?;
    if labels.len() != n {
        return Err(DataError::Format {
            path: what.1.into(),
            reason: format!("{} labels for {n} images in {}", labels.len(), what.0),
        });
    }
    let classes = labels.iter().map(|&l| usize::from(l) + 1).max().unwrap_or(1).max(2);
    Ok(ImageSet { name: name.into(), pixels, labels, shape: (1, h, w), classes })
}

/// Fashion-MNIST's first 10,000 training and 2,000 test images, compiled into the binary
/// (MIT, © Zalando SE; see `host/data/fashion-mnist/`).
pub fn embedded_fashion_mnist() -> Result<Splits, DataError> {
    let names: Vec<String> =
        IDX_FILES.iter().map(|f| format!("embedded fashion-mnist/{f}.gz")).collect();
    let train = idx_pair(EMBEDDED[0], EMBEDDED[1], (&names[0], &names[1]), "fashion-mnist train")?;
    let test = idx_pair(EMBEDDED[2], EMBEDDED[3], (&names[2], &names[3]), "fashion-mnist test")?;
    Ok(Splits {
        name: "fashion-mnist (embedded 10k/2k subset)".into(),
        train,
        test,
        mean_std: (0.2860, 0.3530),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")].into_iter().map(|f| dir.join(f)).find(|p| p.exists())
}

/// Loads an IDX directory (the four MNIST-style files, gzipped or not).
pub fn load_idx_dir(dir: &Path) -> Result<Splits, DataError> {
    let mut paths = Vec::new();
    for f in IDX_FILES {
        paths.push(
            find(dir, f)
                .ok_or_else(|| DataError::Spec(format!("{}: no {f} or {f}.gz", dir.display())))?,
        );
    }
    let s: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let train = idx_pair(&read(&paths[0])?, &read(&paths[1])?, (&s[0], &s[1]), "train")?;
    let test = idx_pair(&read(&paths[2])?, &read(&paths[3])?, (&s[2], &s[3]), "test")?;
    let mean_std = pixel_mean_std(&train);
    Ok(Splits { name: dir.display().to_string(), train, test, mean_std })
}

/// Loads a CIFAR-10 binary directory (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`).
pub fn load_cifar10_dir(dir: &Path) -> Result<Splits, DataError> {
    let mut train: Option<ImageSet> = None;
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        if !p.exists() {
            continue;
        }
        let part = parse_cifar10(&read(&p)?, &p.display().to_string())?;
        train = Some(match train {
            None => part,
            Some(mut t) => {
                t.pixels.extend(part.pixels);
                t.labels.extend(part.labels);
                t
            }
        });
    }
    let train = train.ok_or_else(|| {
        DataError::Spec(format!("{}: no data_batch_1.bin … data_batch_5.bin", dir.display()))
    })?;
    let tp = dir.join("test_batch.bin");
    let test = parse_cifar10(&read(&tp)?, &tp.display().to_string())?;
    let mean_std = pixel_mean_std(&train);
    Ok(Splits { name: dir.display().to_string(), train, test, mean_std })
}

/// `fashion-mnist` (embedded), or a directory holding IDX or CIFAR-10 binary files.
pub fn load(spec: &str) -> Result<Splits, DataError> {
    if spec == "fashion-mnist" || spec == "embedded" {
        return embedded_fashion_mnist();
    }
    let dir = Path::new(spec);
    if !dir.is_dir() {
        return Err(DataError::Spec(format!(
            "--data {spec:?}: expected `fashion-mnist` (embedded) or a directory with IDX files \
             (train-images-idx3-ubyte[.gz] …) or CIFAR-10 binaries (data_batch_1.bin …)"
        )));
    }
    if find(dir, IDX_FILES[0]).is_some() {
        load_idx_dir(dir)
    } else if dir.join("data_batch_1.bin").exists() {
        load_cifar10_dir(dir)
    } else {
        Err(DataError::Spec(format!(
            "{}: neither IDX files (train-images-idx3-ubyte[.gz]) nor CIFAR-10 binaries (data_batch_1.bin)",
            dir.display()
        )))
    }
}

/// Mean and std of all pixel values in [0, 1] (one pair for all channels).
pub fn pixel_mean_std(set: &ImageSet) -> (f32, f32) {
    let n = set.pixels.len().max(1) as f64;
    let mean = set.pixels.iter().map(|&p| f64::from(p) / 255.0).sum::<f64>() / n;
    let var = set.pixels.iter().map(|&p| (f64::from(p) / 255.0 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt().max(1e-6) as f32)
}

/// Turns images into normalised, padded batches.
#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    /// Square size after padding (the next multiple of 8 at or above the image size).
    pub size: usize,
    /// Normalisation.
    pub mean_std: (f32, f32),
}

impl Batcher {
    /// A batcher for images of `shape`: padded to the next multiple of 8 (28 → 32).
    pub fn new(shape: (usize, usize, usize), mean_std: (f32, f32)) -> Batcher {
        Batcher { size: shape.1.max(shape.2).next_multiple_of(8), mean_std }
    }

    /// The images `indices` of `set` as `[N, C, S, S]` and their labels `[N]` (u32).
    /// With `flip_rng`, each image is mirrored left-right with probability 1/2.
    pub fn batch(
        &self,
        set: &dyn Dataset,
        indices: &[usize],
        mut flip_rng: Option<&mut Rng>,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (c, h, w) = set.image_shape();
        let s = self.size;
        let (top, left) = ((s - h) / 2, (s - w) / 2);
        let (mean, std) = self.mean_std;
        let mut out = vec![0f32; indices.len() * c * s * s];
        for (b, &i) in indices.iter().enumerate() {
            let flip = flip_rng.as_mut().is_some_and(|r| r.uniform() < 0.5);
            let px = set.pixels(i);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x };
                        let v = f32::from(px[(ch * h + y) * w + sx]) / 255.0;
                        out[((b * c + ch) * s + top + y) * s + left + x] = (v - mean) / std;
                    }
                }
            }
        }
        let labels: Vec<u32> = indices.iter().map(|&i| set.label(i) as u32).collect();
        Ok((
            Tensor::from_vec(out, (indices.len(), c, s, s), device)?,
            Tensor::from_vec(labels, indices.len(), device)?,
        ))
    }
}

/// A synthetic dataset for tests: class `k` is a bright square at a class-specific position
/// plus noise, so a tiny network learns it in a few steps.
#[derive(Debug, Clone)]
pub struct Synthetic {
    set: ImageSet,
}

impl Synthetic {
    /// `n` images of `1×size×size` over `classes` classes.
    pub fn new(n: usize, size: usize, classes: usize, seed: u64) -> Synthetic {
        let mut rng = Rng::new(seed);
        let mut pixels = vec![0u8; n * size * size];
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let k = rng.below(classes);
            labels.push(k as u8);
            let img = &mut pixels[i * size * size..(i + 1) * size * size];
            for p in img.iter_mut() {
                *p = (rng.uniform() * 60.0) as u8;
            }
            let (cy, cx) = ((k * 7) % (size - 4), (k * 3 + 2) % (size - 4));
            for y in cy..cy + 4 {
                for x in cx..cx + 4 {
                    img[y * size + x] = 255;
                }
            }
        }
        Synthetic {
            set: ImageSet {
                name: "synthetic".into(),
                pixels,
                labels,
                shape: (1, size, size),
                classes,
            },
        }
    }

    /// As splits (`test` is a separate draw).
    pub fn splits(n_train: usize, n_test: usize, size: usize, classes: usize) -> Splits {
        let train = Synthetic::new(n_train, size, classes, 1).set;
        let test = Synthetic::new(n_test, size, classes, 2).set;
        let mean_std = pixel_mean_std(&train);
        Splits { name: "synthetic".into(), train, test, mean_std }
    }
}

impl Dataset for Synthetic {
    fn len(&self) -> usize {
        self.set.len()
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.set.shape
    }
    fn classes(&self) -> usize {
        self.set.classes
    }
    fn pixels(&self, i: usize) -> &[u8] {
        self.set.pixels(i)
    }
    fn label(&self, i: usize) -> usize {
        self.set.label(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fashion_mnist_has_the_committed_subset() {
        let s = embedded_fashion_mnist().unwrap();
        assert_eq!((s.train.len(), s.test.len()), (10_000, 2_000));
        assert_eq!(s.train.shape, (1, 28, 28));
        assert_eq!(s.train.classes, 10);
        let (mean, std) = pixel_mean_std(&s.train);
        assert!((mean - s.mean_std.0).abs() < 0.01 && (std - s.mean_std.1).abs() < 0.01);
        let (tr, va) = s.train.split_tail(2_000).unwrap();
        assert_eq!((tr.len(), va.len()), (8_000, 2_000));
        assert_eq!(va.labels[..], s.train.labels[8_000..]);
        let b = Batcher::new(s.train.shape, s.mean_std);
        let (x, y) = b.batch(&tr, &[0, 1, 2], None, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[3, 1, 32, 32]);
        assert_eq!(
            y.to_vec1::<u32>().unwrap(),
            tr.labels[..3].iter().map(|&l| u32::from(l)).collect::<Vec<_>>()
        );
    }
}
