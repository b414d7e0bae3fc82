//! The Candle side of the search: custom ops, the weight-sharing supernet, its loss and its
//! optimiser (RMSProp with TensorFlow 1 semantics, tunas-spec §4.2).

mod compute;
mod net;
pub mod ops;
mod optim;
mod plain;
mod simd;
mod units;

pub use compute::{ComputeDevice, OpenError, ParseComputeDeviceError};
pub use net::{proxy_strides, Forward, ProxyGeometry, Selection, Supernet, BN_EPS};
pub use optim::{cosine_lr, RmsProp};
pub use plain::{forward_with, plain_forward, HeadNorm, NativeOps, PlainLayer, PlainOps};

use candle_core::{DType, Result, Tensor, D};

/// Softmax cross-entropy with label smoothing `eps` (mean over the batch).
pub fn smoothed_cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    logits.dims2()?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let uniform = logp.mean(D::Minus1)?.neg()?;
    let per = ((nll * (1.0 - eps))? + (uniform * eps)?)?;
    per.mean_all()
}

/// Top-1 accuracy of `logits` on a whole split, in batches of `batch` (no flips): the one
/// evaluation loop of one-shot and stand-alone evaluation.
pub fn evaluate_split(
    set: &crate::data::ImageSet,
    batcher: &crate::data::Batcher,
    batch: usize,
    device: &candle_core::Device,
    mut logits: impl FnMut(&Tensor) -> Result<Tensor>,
) -> anyhow::Result<f64> {
    use crate::data::Dataset;
    let mut hits = 0.0;
    let mut start = 0;
    while start < set.len() {
        let end = (start + batch).min(set.len());
        let idx: Vec<usize> = (start..end).collect();
        let (x, y) = batcher.batch(set, &idx, None, device)?;
        hits += accuracy(&logits(&x)?, &y)? * (end - start) as f64;
        start = end;
    }
    Ok(hits / set.len().max(1) as f64)
}

/// Top-1 accuracy (fraction in [0, 1]).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let pred = logits.argmax(D::Minus1)?;
    let hits = pred.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(hits) / labels.dims1()? as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::space::{space_names, SearchSpace};
    use candle_core::backprop::GradStore;
    use candle_core::Device;

    /// Every weight re-drawn at a scale where a wrong mask or slice shows in the logits.
    fn scramble(net: &Supernet, seed: u64) {
        let mut rng = Rng::new(seed);
        let data = net.vars().data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let n = var.elem_count();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let z = rng.normal() as f32;
                    if name.ends_with("gamma") {
                        1.0 + 0.3 * z
                    } else if name.ends_with("beta") || name.ends_with("bias") {
                        0.3 * z
                    } else {
                        0.5 * z
                    }
                })
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }

    fn max_abs(t: &Tensor) -> f32 {
        t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// A scrambled supernet of `name` at ×0.125 and an input batch of 4, with the generator
    /// that drew the input.
    fn scrambled(name: &str, seed: u64) -> (SearchSpace, Supernet, Tensor, Rng) {
        let space = SearchSpace::by_name(name).unwrap();
        let geometry =
            ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: 0.125 };
        let net = Supernet::new(&space, geometry, &mut Rng::new(seed), &Device::Cpu).unwrap();
        scramble(&net, seed + 1);
        let mut rng = Rng::new(seed + 2);
        let xs: Vec<f32> = (0..4 * 32 * 32).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_vec(xs, (4, 1, 32, 32), &Device::Cpu).unwrap();
        (space, net, x, rng)
    }

    #[test]
    fn masked_supernet_path_equals_the_plain_network_at_selected_widths() {
        for name in space_names() {
            let (space, net, x, mut rng) = scrambled(name, 3);
            for trial in 0..3 {
                // Trial 0: every decision at its largest choice; then random architectures.
                let indices: Vec<usize> =
                    space
                        .decisions
                        .iter()
                        .map(|d| {
                            if trial == 0 {
                                d.num_choices() - 1
                            } else {
                                rng.below(d.num_choices())
                            }
                        })
                        .collect();
                let sel = crate::search::one_hot_selection(
                    &indices,
                    &crate::search::decision_infos(&space),
                );
                let ours = net.forward_masked(&x, &sel, true).unwrap().logits;
                let masked_eval = net.forward_masked(&x, &sel, false).unwrap().logits;
                assert_eq!(
                    ours.to_vec2::<f32>().unwrap(),
                    masked_eval.to_vec2::<f32>().unwrap(),
                    "{name}: the forward-only pass computes the same logits"
                );
                // The public passes take the narrowed path for a one-hot selection.
                let narrowed = net.forward(&x, &sel).unwrap().logits;
                let eval = net.forward_eval(&x, &sel).unwrap();
                assert_eq!(
                    narrowed.to_vec2::<f32>().unwrap(),
                    eval.to_vec2::<f32>().unwrap(),
                    "{name}: the narrowed forward-only pass computes the same logits"
                );
                let d = max_abs(&ours.sub(&narrowed).unwrap());
                assert!(d <= 1e-4 * max_abs(&ours).max(1.0), "{name}: narrowed vs masked {d}");
                let plain = plain_forward(&net.extract(&indices).unwrap(), &x, BN_EPS).unwrap();
                let scale = max_abs(&plain);
                let diff = max_abs(&ours.sub(&plain).unwrap());
                assert!(scale > 0.1, "{name}: logits too small to compare ({scale})");
                assert!(
                    diff <= 1e-4 * scale.max(1.0),
                    "{name} trial {trial}: |Δ| = {diff} (scale {scale})"
                );
            }
        }
    }

    /// A loss of every logit, each weighted differently (so every logit's gradient differs), plus
    /// half the L2 term.
    fn weighted_loss(f: Forward) -> Tensor {
        let n = f.logits.elem_count();
        let w: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
        let w = Tensor::from_vec(w, f.logits.shape(), &Device::Cpu).unwrap();
        (f.logits.mul(&w).unwrap().sum_all().unwrap() + f.l2.affine(0.5, 0.0).unwrap()).unwrap()
    }

    /// Every variable of `net` has the same gradient in `ga` and `gb` (a missing one is zero):
    /// within `rel` of its own scale or `global` of the largest gradient.
    fn assert_same_gradients(
        what: &str,
        net: &Supernet,
        (ga, gb): (&GradStore, &GradStore),
        rel: f32,
        global_rel: f32,
    ) {
        let data = net.vars().data().lock().unwrap();
        let grads: Vec<(String, Tensor, Tensor)> = data
            .iter()
            .map(|(n, v)| {
                let zero = Tensor::zeros(v.shape(), DType::F32, &Device::Cpu).unwrap();
                let a = ga.get(v).cloned().unwrap_or_else(|| zero.clone());
                (n.clone(), a, gb.get(v).cloned().unwrap_or(zero))
            })
            .collect();
        // Float noise scales with the largest gradient (sums of the same terms in another
        // order), so that is the yardstick: a BN β followed by another BN has an exact
        // gradient of 0 and float noise of ~1e-8 of the largest in either pass.
        let global = grads.iter().map(|(_, a, _)| max_abs(a)).fold(0.0, f32::max);
        let mut compared = 0;
        for (var, a, b) in &grads {
            let scale = max_abs(a).max(max_abs(b));
            let d = max_abs(&a.sub(b).unwrap());
            assert!(
                d <= rel * scale.max(1e-3) || d <= global_rel * global,
                "{what} {var}: gradient differs by {d} (its scale {scale}, largest {global})"
            );
            compared += usize::from(scale > 0.0);
        }
        assert!(compared > 10, "{what}: only {compared} variables had gradients");
    }

    #[test]
    fn the_narrowed_pass_has_the_masked_pass_gradients_and_l2() {
        for name in space_names() {
            let (space, net, x, mut rng) = scrambled(name, 7);
            let indices = space.random_architecture(&mut rng).indices;
            let sel =
                crate::search::one_hot_selection(&indices, &crate::search::decision_infos(&space));
            let masked = net.forward_masked(&x, &sel, true).unwrap();
            let narrowed = net.forward(&x, &sel).unwrap();
            let (l2m, l2n) =
                (masked.l2.to_scalar::<f32>().unwrap(), narrowed.l2.to_scalar::<f32>().unwrap());
            assert!((l2m - l2n).abs() <= 1e-4 * l2m.abs(), "{name}: L2 {l2m} vs {l2n}");
            let gm = weighted_loss(masked).backward().unwrap();
            let gn = weighted_loss(narrowed).backward().unwrap();
            assert_same_gradients(name, &net, (&gm, &gn), 1e-3, 1e-5);
        }
    }

    /// What a CUDA device runs (Candle's own ops in place of the custom CPU ops) is the same
    /// network: the logits, the L2 term and every gradient of a step, on the narrowed and the
    /// masked pass, and the forward-only logits.
    #[test]
    fn candle_kernels_give_the_custom_ops_logits_and_gradients() {
        for name in space_names() {
            let (space, net, x, mut rng) = scrambled(name, 13);
            let indices = space.random_architecture(&mut rng).indices;
            let sel =
                crate::search::one_hot_selection(&indices, &crate::search::decision_infos(&space));
            for masked in [false, true] {
                let what = format!("{name} masked {masked}");
                let pass = || match masked {
                    true => net.forward_masked(&x, &sel, true).unwrap(),
                    false => net.forward(&x, &sel).unwrap(),
                };
                let (ours, theirs) = (pass(), ops::with_candle_kernels(pass));
                let scale = max_abs(&ours.logits);
                let d = max_abs(&ours.logits.sub(&theirs.logits).unwrap());
                assert!(scale > 0.1 && d <= 1e-4 * scale.max(1.0), "{what}: logits differ by {d}");
                let (a, b) =
                    (ours.l2.to_scalar::<f32>().unwrap(), theirs.l2.to_scalar::<f32>().unwrap());
                assert!((a - b).abs() <= 1e-5 * a.abs(), "{what}: L2 {a} vs {b}");
                let ga = weighted_loss(ours).backward().unwrap();
                let gb = weighted_loss(theirs).backward().unwrap();
                // Candle's batch norm sums in f32, the custom op in f64: through the scrambled
                // weights' large activations that moves a few BN gradients by up to 0.3% of
                // their size (6e-5 of the largest gradient). A wrong tap, stride or padding
                // changes gradients by their whole size.
                assert_same_gradients(&what, &net, (&ga, &gb), 1e-2, 2e-4);
            }
            let eval = net.forward_eval(&x, &sel).unwrap();
            let eval_candle = ops::with_candle_kernels(|| net.forward_eval(&x, &sel).unwrap());
            let d = max_abs(&eval.sub(&eval_candle).unwrap());
            assert!(d <= 1e-4 * max_abs(&eval).max(1.0), "{name}: forward-only differs by {d}");
        }
    }

    /// Why proxy channels are `max(1, round(c·m))` and not `scale_filters(c, m)` (multiples of
    /// 8, at least 8): at the default ×0.25 the reference rounding merges most filter choices.
    #[test]
    fn proxy_channels_keep_filter_choices_apart_where_scale_filters_merges_them() {
        use crate::space::{scale_filters, DecisionKind};
        let g = ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: 0.25 };
        let (mut choices, mut ours, mut reference) = (0, 0, 0);
        for name in space_names() {
            let space = SearchSpace::by_name(name).unwrap();
            for d in &space.decisions {
                let DecisionKind::Filters(v) = &d.kind else { continue };
                let distinct = |f: &dyn Fn(u32) -> usize| {
                    let mut w: Vec<usize> = v.iter().map(|&c| f(c)).collect();
                    w.dedup();
                    w.len()
                };
                choices += v.len();
                ours += distinct(&|c| g.channels(c));
                reference += distinct(&|c| scale_filters(f64::from(c), 0.25) as usize);
            }
        }
        assert_eq!(ours, choices, "every filter choice keeps its own proxy width");
        // 31 of the 111 filter choices of the three spaces would share a width with another.
        assert!(choices - reference >= 30, "scale_filters keeps {reference} of {choices} apart");
    }

    #[test]
    fn smoothed_cross_entropy_matches_the_formula() {
        let logits = Tensor::new(&[[2.0f32, 0.0, -1.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let ce = smoothed_cross_entropy(&logits, &labels, 0.1).unwrap().to_scalar::<f32>().unwrap();
        let lse = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
        let logp = [2.0 - lse, -lse, -1.0 - lse];
        let want = -(0.9 + 0.1 / 3.0) * logp[0] - (0.1 / 3.0) * (logp[1] + logp[2]);
        assert!((f64::from(ce) - want).abs() < 1e-5, "{ce} vs {want}");
    }
}
