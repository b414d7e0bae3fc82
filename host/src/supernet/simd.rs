//! Runtime CPU-feature dispatch for the custom ops' loops. The workspace builds for baseline
//! x86-64 (SSE2: 4 floats per instruction); [`wide_fn!`] defines a function whose body also
//! gets a copy compiled for AVX2 (8 floats), run when the CPU has it. The arithmetic is the
//! same (no fused multiply-add is introduced), so the results are bit-identical either way.

/// `wide_fn! { fn name(a: A, b: B) -> R { … } }` defines `name` with that body, compiled twice:
/// for the build's baseline and for AVX2; a call runs the AVX2 copy where the CPU supports it.
/// The body's callees should be `#[inline(always)]` so that they are compiled into each copy.
macro_rules! wide_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(super) use wide_fn;
