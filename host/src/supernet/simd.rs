//! Runtime CPU-feature dispatch for the custom ops' loops. The workspace builds for baseline
//! x86-64 (SSE2: 4 floats per instruction); [`wide_fn!`] defines a function that runs its body
//! compiled for AVX2 (8 floats) when the CPU has it. The arithmetic is the same (no fused
//! multiply-add is introduced), so the results are bit-identical either way.

/// `wide_fn!(fn name(a: A, b: B) = body)` defines `name`, which calls `body(a, b)` (an
/// `#[inline(always)]` function, so that its loops are compiled into the caller) from a copy
/// compiled with AVX2 where the CPU supports it.
macro_rules! wide_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(super) use wide_fn;
