#!/usr/bin/env python3
"""PyTorch twin of the Candle weight-sharing supernet benchmark (host/benches/supernet.rs).

Rebuilds the supernet from the spec the Rust bench dumps (`--dump spec.json`: max channel
counts, kernel sizes, strides, switches, and the sampled architectures with their selected
channel counts and switch weights) and times training steps over the same architectures:

  python3 scripts/bench/supernet_torch.py --spec spec.json [--batch 64] [--steps 5] [--threads 2]
  python3 scripts/bench/supernet_torch.py --spec spec.json --check

Semantics follow the Candle supernet: every tensor carries the max channel count; selected
widths are 0/1 channel masks (first n channels) applied to the kernels (W * out ⊗ in) and to the
BN affine (γ·m, β·m, batch statistics, eps 1e-3), so masked channels are exactly zero; switches
sum their enabled branches weighted by the switch weights (branches with weight 0 are not run);
a skippable layer gives x + present·body(x); TF SAME padding; loss = label-smoothed (0.1) cross
entropy + 2e-5 · Σ switch-weighted ‖masked kernel‖²; RMSprop(lr 0.01, α 0.9, momentum 0.9, ε 1).

What is timed: by default the plain network sliced to the selected widths (`Supernet.narrowed`),
what the Candle supernet runs for a one-hot architecture; `--masked` times the masked
formulation above instead (the Candle bench's `--masked 1`).

Per architecture: 1 warm-up step, then `--steps` timed steps; a step is forward + loss ("fwd"),
backward, optimizer step, zero_grad; then 1 + `--steps` forward-only passes under
torch.no_grad() ("eval", batch statistics as in training). Medians are the element at len/2 of the sorted times, like
the Rust bench. `--check` verifies, on the first architecture, that the masked channels of every
layer output are exactly zero and that the logits equal those of the plain network sliced to the
selected widths, prints the logits shape and the loss, and exits.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3
L2_DECAY = 2e-5
LABEL_SMOOTHING = 0.1


# ---------------------------------------------------------------- ops


def same_pad(x, k, stride):
    """TF SAME padding of an NCHW tensor for a k×k window at `stride` (extra pixel bottom/right)."""
    h, w = x.shape[-2:]
    pads = []
    for size in (w, h):  # F.pad order: last dim first
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def conv_same(x, w, stride):
    return F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride)


def depthwise_same(x, w, stride):
    """Depthwise conv: x [N, C, H, W], w [C, 1, k, k]."""
    return F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride, groups=w.shape[0])


def conv1x1(x, w):
    """1×1 conv: x [N, Cin, H, W], w [Cout, Cin]."""
    return F.conv2d(x, w[:, :, None, None])


def activate(x, act):
    if act == "relu":
        return F.relu(x)
    if act == "hswish":
        return F.hardswish(x)
    if act == "none":
        return x
    raise ValueError(f"unknown activation {act!r}")


def mask_kernel(w, out_mask, in_mask):
    """W ⊙ (out ⊗ in), broadcast over the kernel's trailing (spatial) dims."""
    outer = out_mask[:, None] * in_mask[None, :]
    return w * outer.reshape(outer.shape + (1,) * (w.dim() - 2))


_masks = {}

# Set to a list by --check: every layer output and masked intermediate tensor is recorded as
# (layer index, label, tensor, selected channels).
_probe = None
_probe_layer = 0


def probe(label, t, n):
    if _probe is not None:
        _probe.append((_probe_layer, label, t, n))
    return t


def mask(n, n_max):
    """0/1 float mask of n_max channels with the first n set (cached: same tensor every step)."""
    key = (n, n_max)
    if key not in _masks:
        m = torch.zeros(n_max)
        m[:n] = 1.0
        _masks[key] = m
    return _masks[key]


# ---------------------------------------------------------------- modules


def he(*shape, fan_in):
    """he_normal as in the reference: truncated normal (±2σ), σ = sqrt(2/fan_in)/0.8796."""
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(shape), 0.0, std, -2 * std, 2 * std))


class Bn(nn.Module):
    """Stateless BN: batch statistics always, affine masked (masked channels exactly 0)."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x, m):
        return F.batch_norm(x, None, None, self.gamma * m, self.beta * m, training=True, eps=BN_EPS)

    def plain(self, x, n):
        return F.batch_norm(x, None, None, self.gamma[:n], self.beta[:n], training=True, eps=BN_EPS)


class Stem(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        ci, co = spec["cin_max"], spec["cout_max"]
        self.kernels = nn.ParameterList(he(co, ci, k, k, fan_in=k * k * ci) for k in spec["kernels"])
        self.bns = nn.ModuleList(Bn(co) for _ in spec["kernels"])

    def forward(self, x, sel, l2):
        im, om = mask(sel["in_sel"], self.spec["cin_max"]), mask(sel["out_sel"], self.spec["cout_max"])
        acc = None
        for w, bn, sw in zip(self.kernels, self.bns, sel["kernel_weights"]):
            if sw == 0:
                continue
            wm = mask_kernel(w, om, im)
            l2.append(wm.square().sum() * sw)
            h = activate(bn(conv_same(x, wm, self.spec["stride"]), om), self.spec["act"])
            probe(f"stem k{w.shape[-1]}", h, sel["out_sel"])
            acc = h * sw if acc is None else acc + h * sw
        return acc

    def plain(self, x, sel, l2=None):
        i = argmax(sel["kernel_weights"])
        n_in, n_out = sel["in_sel"], sel["out_sel"]
        h = conv_same(x, sliced(self.kernels[i][:n_out, :n_in], l2), self.spec["stride"])
        return activate(self.bns[i].plain(h, n_out), self.spec["act"])


class Sep(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        ci, co = spec["cin_max"], spec["cout_max"]
        self.kernels = nn.ParameterList(he(ci, 1, k, k, fan_in=k * k) for k in spec["kernels"])
        self.bns = nn.ModuleList(Bn(ci) for _ in spec["kernels"])
        self.proj = he(co, ci, fan_in=ci)
        self.proj_bn = Bn(co)

    def forward(self, x, sel, l2):
        present = sel.get("present", 1.0)
        im, om = mask(sel["in_sel"], self.spec["cin_max"]), mask(sel["out_sel"], self.spec["cout_max"])

        def body():
            acc = None
            for w, bn, sw in zip(self.kernels, self.bns, sel["kernel_weights"]):
                if sw == 0:
                    continue
                wm = w * im[:, None, None, None]
                l2.append(wm.square().sum() * (sw * present))
                h = activate(bn(depthwise_same(x, wm, self.spec["stride"]), im), self.spec["act"])
                probe(f"sep depthwise k{w.shape[-1]}", h, sel["in_sel"])
                acc = h * sw if acc is None else acc + h * sw
            pm = mask_kernel(self.proj, om, im)
            l2.append(pm.square().sum() * present)
            return self.proj_bn(conv1x1(acc, pm), om)

        return residual(x, self.spec["skippable"], present, body)

    def plain(self, x, sel, l2=None):
        if self.spec["skippable"] and sel["present"] == 0:
            return x
        i = argmax(sel["kernel_weights"])
        n_in, n_out = sel["in_sel"], sel["out_sel"]
        h = depthwise_same(x, sliced(self.kernels[i][:n_in], l2), self.spec["stride"])
        h = activate(self.bns[i].plain(h, n_in), self.spec["act"])
        y = self.proj_bn.plain(conv1x1(h, sliced(self.proj[:n_out, :n_in], l2)), n_out)
        return x + y if self.spec["skippable"] else y


class Bottleneck(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        ci, co, e = spec["cin_max"], spec["cout_max"], spec["e_max"]
        self.expand = he(e, ci, fan_in=ci)
        self.expand_bn = Bn(e)
        self.kernels = nn.ParameterList(he(e, 1, k, k, fan_in=k * k) for k in spec["kernels"])
        self.bns = nn.ModuleList(Bn(e) for _ in spec["kernels"])
        h = spec.get("se_hidden_max")
        self.has_se = h is not None
        if self.has_se:
            self.se_w1 = he(h, e, fan_in=e)
            self.se_b1 = nn.Parameter(torch.zeros(h))
            self.se_w2 = he(e, h, fan_in=h)
            self.se_b2 = nn.Parameter(torch.zeros(e))
        self.proj = he(co, e, fan_in=e)
        self.proj_bn = Bn(co)

    def forward(self, x, sel, l2):
        spec = self.spec
        present = sel.get("present", 1.0)
        im, om = mask(sel["in_sel"], spec["cin_max"]), mask(sel["out_sel"], spec["cout_max"])
        em = mask(sel["e_sel"], spec["e_max"])

        def body():
            xm = mask_kernel(self.expand, em, im)
            l2.append(xm.square().sum() * present)
            h = probe("ib expansion", activate(self.expand_bn(conv1x1(x, xm), em), spec["act"]), sel["e_sel"])
            acc = None
            for w, bn, sw in zip(self.kernels, self.bns, sel["kernel_weights"]):
                if sw == 0:
                    continue
                wm = w * em[:, None, None, None]
                l2.append(wm.square().sum() * (sw * present))
                d = activate(bn(depthwise_same(h, wm, spec["stride"]), em), spec["act"])
                probe(f"ib depthwise k{w.shape[-1]}", d, sel["e_sel"])
                acc = d * sw if acc is None else acc + d * sw
            h = acc
            if self.has_se:
                off, on = sel["se_weights"]
                hm = mask(sel["h_sel"], spec["se_hidden_max"])
                out = h * off if off != 0 else None
                if on != 0:
                    w1, w2 = mask_kernel(self.se_w1, hm, em), mask_kernel(self.se_w2, em, hm)
                    # Note: the Candle supernet (net.rs) currently adds no L2 term for SE kernels.
                    l2.append((w1.square().sum() + w2.square().sum()) * (on * present))
                    pooled = h.mean(dim=(2, 3), keepdim=True)
                    z = F.relu(conv1x1(pooled, w1) + (self.se_b1 * hm)[None, :, None, None])
                    gate = torch.sigmoid(conv1x1(z, w2) + (self.se_b2 * em)[None, :, None, None])
                    y = h * gate * on
                    out = y if out is None else out + y
                h = probe("ib SE", out, sel["e_sel"])
            pm = mask_kernel(self.proj, om, em)
            l2.append(pm.square().sum() * present)
            return self.proj_bn(conv1x1(h, pm), om)

        return residual(x, spec["skippable"], present, body)

    def plain(self, x, sel, l2=None):
        spec = self.spec
        if spec["skippable"] and sel["present"] == 0:
            return x
        n_in, n_out, e = sel["in_sel"], sel["out_sel"], sel["e_sel"]
        i = argmax(sel["kernel_weights"])
        h = activate(self.expand_bn.plain(conv1x1(x, sliced(self.expand[:e, :n_in], l2)), e), spec["act"])
        h = depthwise_same(h, sliced(self.kernels[i][:e], l2), spec["stride"])
        h = activate(self.bns[i].plain(h, e), spec["act"])
        if self.has_se and argmax(sel["se_weights"]) == 1:
            hid = sel["h_sel"]
            pooled = h.mean(dim=(2, 3), keepdim=True)
            z = F.relu(conv1x1(pooled, sliced(self.se_w1[:hid, :e], l2)) + self.se_b1[:hid][None, :, None, None])
            h = h * torch.sigmoid(conv1x1(z, sliced(self.se_w2[:e, :hid], l2)) + self.se_b2[:e][None, :, None, None])
        y = self.proj_bn.plain(conv1x1(h, sliced(self.proj[:n_out, :e], l2)), n_out)
        return x + y if spec["skippable"] else y


class Head(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.conv = he(spec["cout_max"], spec["cin_max"], fan_in=spec["cin_max"])
        self.bn = Bn(spec["cout_max"])

    def forward(self, x, sel, l2):
        im, om = mask(sel["in_sel"], self.spec["cin_max"]), mask(sel["out_sel"], self.spec["cout_max"])
        wm = mask_kernel(self.conv, om, im)
        l2.append(wm.square().sum())
        h = activate(self.bn(conv1x1(x, wm), om), self.spec["act"])
        return h.mean(dim=(2, 3), keepdim=True) if self.spec["pool"] else h

    def plain(self, x, sel, l2=None):
        n_in, n_out = sel["in_sel"], sel["out_sel"]
        h = activate(self.bn.plain(conv1x1(x, sliced(self.conv[:n_out, :n_in], l2)), n_out), self.spec["act"])
        return h.mean(dim=(2, 3), keepdim=True) if self.spec["pool"] else h


def residual(x, skippable, present, body):
    """x + present·body(x) for a skippable layer (body not run when present is 0), else body(x)."""
    if not skippable:
        return body()
    if present == 0:
        return x
    y = body()
    return x + (y if present == 1 else y * present)


def sliced(w, l2):
    """A sliced kernel, its squared norm appended to `l2` when given."""
    if l2 is not None:
        l2.append(w.square().sum())
    return w


def argmax(w):
    return max(range(len(w)), key=lambda i: (w[i], -i))


UNITS = {"stem": Stem, "sep": Sep, "ib": Bottleneck, "head": Head}


class Supernet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.layers = nn.ModuleList(UNITS[l["kind"]](l) for l in spec["layers"])
        c = spec["classifier"]
        self.cls_w = nn.Parameter(torch.randn(c["classes"], c["cin_max"]) * 0.01)
        self.cls_b = nn.Parameter(torch.zeros(c["classes"]))

    def forward(self, x, arch):
        """Logits and the switch-weighted L2 of the masked kernels used."""
        global _probe_layer
        l2 = []
        for i, (layer, sel) in enumerate(zip(self.layers, arch["layers"])):
            _probe_layer = i
            x = probe(f"{layer.spec['kind']} output", layer(x, sel, l2), sel["out_sel"])
        if x.dim() == 4 and x.shape[-2:] != (1, 1):
            x = x.mean(dim=(2, 3), keepdim=True)
        logits = F.linear(x.flatten(1), self.cls_w, self.cls_b)
        return logits, torch.stack(l2).sum() if l2 else torch.zeros(())

    def plain(self, x, arch, l2=None):
        """The plain network of a one-hot architecture: weights sliced, no masks (the L2 of
        the sliced kernels appended to `l2` when given)."""
        for layer, sel in zip(self.layers, arch["layers"]):
            x = layer.plain(x, sel, l2)
        if x.dim() == 4 and x.shape[-2:] != (1, 1):
            x = x.mean(dim=(2, 3), keepdim=True)
        return F.linear(x.flatten(1), self.cls_w[:, : x.shape[1]], self.cls_b)

    def narrowed(self, x, arch):
        """Logits and L2 of the plain network: what the Candle supernet runs for a one-hot
        architecture (its masked channels are zeros that add nothing to any sum)."""
        l2 = []
        logits = self.plain(x, arch, l2)
        return logits, torch.stack(l2).sum() if l2 else torch.zeros(())


def loss_fn(logits, l2, y):
    return F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING) + L2_DECAY * l2


# ---------------------------------------------------------------- main


def median(v):
    """Element at len/2 of the sorted values (the Rust bench's median)."""
    return sorted(v)[len(v) // 2]


def check(net, arch, x, y):
    global _probe
    _probe = []
    with torch.no_grad():
        logits, l2 = net(x, arch)
        loss = loss_fn(logits, l2, y)
    probes, _probe = _probe, None
    bad = []
    masked = 0
    for i, label, t, n in probes:
        if not bool(torch.isfinite(t).all()):
            bad.append(f"layer {i} {label}: non-finite values")
        elif not bool((t[:, n:] == 0).all()):
            nz = int((t[:, n:] != 0).sum())
            bad.append(f"layer {i} {label}: {nz} nonzero values in masked channels {n}..{t.shape[1]}")
        masked += n < t.shape[1]
    for i, (sel, layer) in enumerate(zip(arch["layers"], net.layers)):
        out = [t for j, label, t, _ in probes if j == i and label.endswith("output")]
        if len(out) != 1 or out[0].shape[1] != layer.spec["cout_max"]:
            bad.append(f"layer {i}: output does not carry {layer.spec['cout_max']} channels")
    for b in bad:
        print("FAIL:", b)
    outputs = sum(label.endswith("output") for _, label, _, _ in probes)
    print(
        f"masked channels exactly zero: {len(probes)} tensors checked ({outputs} layer outputs, "
        f"{len(probes) - outputs} intermediates; {masked} with masked channels), {len(bad)} failures"
    )
    one_hot = all(
        all(w in (0.0, 1.0) for w in sel.get(key, [1.0])) and sel.get("present", 1.0) in (0.0, 1.0)
        for sel in arch["layers"]
        for key in ("kernel_weights", "se_weights")
    )
    if one_hot:
        with torch.no_grad():
            ref = net.plain(x, arch)
        diff = float((logits - ref).abs().max())
        tol = 1e-4 * max(1.0, float(ref.abs().max()))
        print(f"plain sliced network: max |Δ logits| = {diff:.3g} (tolerance {tol:.3g})")
        if not diff <= tol:
            bad.append("logits differ from the plain network")
    else:
        print("architecture is not one-hot: plain-network comparison skipped")
    print(f"logits shape: {tuple(logits.shape)}")
    print(f"loss: {float(loss):.6f} (cross entropy {float(loss - L2_DECAY * l2):.6f}, L2 {float(l2):.4f})")
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="spec JSON dumped by the Rust bench (--dump)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per architecture (+1 warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="check masking on the first architecture and exit")
    ap.add_argument(
        "--masked",
        action="store_true",
        help="time the masked formulation (every layer at its largest width) instead of the plain "
        "network sliced to the selected widths (what the Candle supernet runs for one-hot selections)",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the twin of the Candle bench's --device)")
    args = ap.parse_args()

    dev = torch.device(args.device)
    torch.set_default_device(dev)
    # Timings stop when the device is done, not when the work is queued.
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.set_num_threads(args.threads)
    with open(args.spec) as f:
        spec = json.load(f)
    geo = spec["geometry"]
    torch.manual_seed(1)
    net = Supernet(spec)
    gen = torch.Generator(device="cpu").manual_seed(7)
    hw, cin = geo["input_hw"], geo["in_channels"]
    x = torch.randn(args.batch, cin, hw, hw, generator=gen, device="cpu").to(dev)
    y = torch.arange(args.batch, device=dev) % spec["classifier"]["classes"]
    archs = spec["archs"]
    if not archs:
        sys.exit("spec has no architectures (dump it with --archs > 0)")

    if args.check:
        sys.exit(0 if check(net, archs[0], x, y) else 1)

    forward = net if args.masked else net.narrowed
    opt = torch.optim.RMSprop(net.parameters(), lr=0.01, alpha=0.9, momentum=0.9, eps=1.0)
    n_weights = sum(p.numel() for p in net.parameters())
    print(
        f"pytorch supernet: {spec.get('space', '?')} at width ×{geo.get('width_multiplier', '?')}, "
        f"{n_weights} weights, batch {args.batch}, {len(archs)} architectures × {args.steps} timed steps "
        f"(+1 warm-up), {args.threads} threads, {dev}, torch {torch.__version__} "
        f"(peak RSS after import: {rss_import:.0f} MB)",
        file=sys.stderr,
    )
    load, ncpu = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * ncpu:
        print(
            f"warning: load average {load:.1f} on {ncpu} CPUs: timings may be inflated (with busy "
            "cores, OpenMP spin-waiting can slow PyTorch down many times; OMP_WAIT_POLICY=PASSIVE "
            "limits that)",
            file=sys.stderr,
        )
    print("| framework | batch | arch | median step ms | median fwd ms | median eval ms |")
    print("|---|---|---|---|---|---|")
    all_steps, all_fwd, all_eval = [], [], []
    for a, arch in enumerate(archs):
        steps, fwds = [], []
        for s in range(args.steps + 1):
            t0 = time.perf_counter()
            logits, l2 = forward(x, arch)
            loss = loss_fn(logits, l2, y)
            sync()
            tf = time.perf_counter() - t0
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            t = time.perf_counter() - t0
            if not math.isfinite(loss.item()):
                sys.exit(f"arch {a} step {s}: loss is {loss.item()}")
            if s > 0:
                steps.append(t * 1e3)
                fwds.append(tf * 1e3)
        # Forward only (validation), torch.no_grad(); BN keeps batch statistics as in training.
        evals = []
        with torch.no_grad():
            for s in range(args.steps + 1):
                t0 = time.perf_counter()
                logits, _ = forward(x, arch)
                float(logits.sum())
                if s > 0:
                    evals.append((time.perf_counter() - t0) * 1e3)
        print(
            f"| pytorch | {args.batch} | {a} | {median(steps):.1f} | {median(fwds):.1f} | {median(evals):.1f} |",
            flush=True,
        )
        all_steps += steps
        all_fwd += fwds
        all_eval += evals
    print(
        f"| pytorch | {args.batch} | all | {median(all_steps):.1f} | {median(all_fwd):.1f} | {median(all_eval):.1f} |"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
