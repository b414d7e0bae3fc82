//! The protocol server: framed JSON requests in, framed JSON responses out, over any byte
//! stream (stdio, a serial port, a TCP connection).
//!
//! A malformed or unknown request gets an `Error` response and the agent keeps serving; so do a
//! method that fails `Method::check` and a canary that cannot be built (measuring without drift
//! detection would be silent). A key that fails to build or run (an out-of-bounds key among
//! them) is that key's `Failed` response; a host of another protocol version gets an `Error`
//! naming both versions. While a request is worked on, `Progress` heartbeats go out after every
//! key, canary, second of cool-down and network pass.

use std::cell::RefCell;
use std::io::{Read, Write};

use anyhow::Result;
use latency_tables::frame::{write_frame, FrameReader};
use latency_tables::wire::{network_digest, Request, Response, Subject, PROTOCOL_VERSION};
use latency_tables::Fingerprint;

use crate::engine::Engine;
use crate::measure::{self, Canary, Placement};

/// Serves one connection until `Shutdown` or end of stream. Returns the number of requests.
pub fn serve(
    engine: &dyn Engine,
    fingerprint: &Fingerprint,
    placement: &Placement,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64> {
    let mut reader = FrameReader::new(input);
    let mut hello = false;
    let mut canary: Option<Canary> = None;
    let mut served = 0;
    let send = |r: &Response, output: &mut dyn Write| -> Result<()> {
        write_frame(output, &serde_json::to_vec(r)?)?;
        Ok(())
    };
    while let Some(payload) = reader.read_frame()? {
        served += 1;
        let request: Request = match serde_json::from_slice(&payload) {
            Ok(r) => r,
            Err(e) => {
                send(
                    &Response::Error { message: format!("malformed or unknown request: {e}") },
                    output,
                )?;
                continue;
            }
        };
        match request {
            Request::Hello { protocol, client } => {
                if protocol != PROTOCOL_VERSION {
                    send(
                        &Response::Error {
                            message: format!(
                                "protocol version mismatch: the host ({client}) speaks version {protocol}, this agent speaks version {PROTOCOL_VERSION}"
                            ),
                        },
                        output,
                    )?;
                    continue;
                }
                hello = true;
                let agent =
                    format!("device-agent {} ({})", env!("CARGO_PKG_VERSION"), engine.describe());
                send(
                    &Response::Hello {
                        protocol: PROTOCOL_VERSION,
                        agent,
                        fingerprint: fingerprint.clone(),
                    },
                    output,
                )?;
            }
            _ if !hello => {
                send(
                    &Response::Error {
                        message: "send hello (with the protocol version) first".into(),
                    },
                    output,
                )?;
            }
            Request::Info => send(&Response::Info { fingerprint: fingerprint.clone() }, output)?,
            Request::Measure { ref method, .. } | Request::MeasureNetwork { ref method, .. }
                if method.check().is_err() =>
            {
                if let Err(why) = method.check() {
                    let message = format!("refusing the method: {why}");
                    send(&Response::Error { message }, output)?;
                }
            }
            Request::Measure { id, pass, keys, method } => {
                if canary.is_none() && method.canary_every > 0 {
                    match Canary::new(engine, &method) {
                        Ok(c) => canary = Some(c),
                        Err(e) => {
                            // Without its canary a pass cannot detect drift: refuse rather
                            // than measure silently without it.
                            let message = format!(
                                "the canary block {} could not be built ({e:#}); pass --canary-every 0 to measure without drift detection",
                                measure::CANARY
                            );
                            send(&Response::Error { message }, output)?;
                            continue;
                        }
                    }
                }
                let total = keys.len() as u64;
                let mut out = RefCell::new(&mut *output);
                measure::run_pass(
                    engine,
                    &keys,
                    &method,
                    placement,
                    &mut canary,
                    &mut |key, result| {
                        let response = match result {
                            Ok(timing) => Response::Measured {
                                id,
                                pass: Some(pass),
                                subject: Subject::Key(key.clone()),
                                timing,
                            },
                            Err(e) => Response::Failed {
                                id,
                                subject: Subject::Key(key.clone()),
                                error: format!("{e:#}"),
                            },
                        };
                        send(&response, &mut **out.borrow_mut())
                    },
                    &mut |done| {
                        send(&Response::Progress { id, done, total }, &mut **out.borrow_mut())
                    },
                )?;
                send(&Response::Done { id }, out.get_mut())?;
            }
            Request::MeasureNetwork { id, network, method } => {
                let subject = Subject::Network {
                    layers: network.layers.len(),
                    digest: network_digest(&network),
                };
                let total = u64::from(method.passes.max(1));
                let timing =
                    measure::time_network(engine, &network, &method, placement, &mut |done| {
                        send(&Response::Progress { id, done, total }, output)
                    });
                let response = match timing {
                    Ok(timing) => Response::Measured { id, pass: None, subject, timing },
                    Err(e) => Response::Failed { id, subject, error: format!("{e:#}") },
                };
                send(&response, output)?;
                send(&Response::Done { id }, output)?;
            }
            Request::Shutdown => {
                send(&Response::Bye, output)?;
                break;
            }
        }
    }
    let rejected = reader.rejected();
    if rejected != Default::default() {
        measure::warn_line(&format!("rejected input: {rejected:?}"));
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FakeEngine;
    use latency_tables::frame::{encode_frame, Decoder};
    use latency_tables::{Method, OpKey};

    fn quick() -> Method {
        Method { canary_every: 0, ..Method::instant() }
    }

    fn frame(r: &Request) -> Vec<u8> {
        encode_frame(&serde_json::to_vec(r).unwrap())
    }

    fn run(input: Vec<u8>, engine: &FakeEngine) -> Vec<Response> {
        let mut out = Vec::new();
        let placement = Placement { cpus: vec![], thermal_limit_c: 200.0 };
        serve(engine, &Fingerprint::default(), &placement, &mut &input[..], &mut out).unwrap();
        let mut d = Decoder::new();
        d.push(&out);
        std::iter::from_fn(|| d.next_frame())
            .map(|p| serde_json::from_slice(&p).unwrap())
            .filter(|r| !matches!(r, Response::Progress { .. }))
            .collect()
    }

    fn hello() -> Request {
        Request::Hello { protocol: PROTOCOL_VERSION, client: "test".into() }
    }

    #[test]
    fn a_session_with_garbage_unknown_and_failing_requests_keeps_serving() {
        let key: OpKey = "pool/7x7x64".parse().unwrap();
        let mut input = b"line noise".to_vec();
        input.extend(frame(&Request::Info)); // before hello
        input.extend(frame(&hello()));
        input.extend(encode_frame(br#"{"type":"reboot"}"#));
        input.extend(encode_frame(b"not json"));
        let mut oversized = latency_tables::frame::MAGIC.to_vec();
        oversized.extend(u32::MAX.to_le_bytes());
        oversized.extend([0; 4]);
        input.extend(oversized);
        input.extend(frame(&Request::Measure {
            id: 7,
            pass: 0,
            keys: vec![key.clone(), key.clone()],
            method: quick(),
        }));
        input.extend(frame(&Request::Shutdown));
        input.extend(frame(&Request::Info)); // after shutdown: not served
        let r = run(input, &FakeEngine::default());
        assert!(matches!(&r[0], Response::Error { message } if message.contains("hello")));
        assert!(matches!(&r[1], Response::Hello { protocol: PROTOCOL_VERSION, .. }));
        assert!(
            matches!(&r[2], Response::Error { message } if message.contains("unknown variant"))
        );
        assert!(matches!(&r[3], Response::Error { .. }));
        assert!(
            matches!(&r[4], Response::Measured { id: 7, pass: Some(0), timing, .. } if !timing.samples_us.is_empty())
        );
        assert!(matches!(&r[5], Response::Measured { id: 7, .. }));
        assert!(matches!(&r[6], Response::Done { id: 7 }));
        assert!(matches!(&r[7], Response::Bye));
        assert_eq!(r.len(), 8);
        let r = run(
            [
                frame(&hello()),
                frame(&Request::Measure { id: 1, pass: 0, keys: vec![key], method: quick() }),
            ]
            .concat(),
            &FakeEngine { ns_per_byte: 0.0, fail_modulo: 1 },
        );
        assert!(
            matches!(&r[1], Response::Failed { id: 1, error, .. } if error.contains("fake engine refuses"))
        );
        assert!(matches!(&r[2], Response::Done { id: 1 }));
    }

    #[test]
    fn another_protocol_version_is_refused_by_name() {
        let r = run(
            frame(&Request::Hello { protocol: 99, client: "tunas 9".into() }),
            &FakeEngine::default(),
        );
        assert!(
            matches!(&r[0], Response::Error { message } if message.contains("version 99") && message.contains(&format!("version {PROTOCOL_VERSION}"))),
            "{r:?}"
        );
    }

    /// Whether a request could keep the fuzz test busy for long (a mutated digit turning
    /// `pass_secs: 0.0` into `90.0`): such frames are replaced, to keep the test fast. The
    /// method check itself is fuzzed with explicit extreme values.
    fn slow(payload: &[u8]) -> bool {
        let method = match serde_json::from_slice::<Request>(payload) {
            Ok(Request::Measure { method, .. } | Request::MeasureNetwork { method, .. }) => method,
            _ => return false,
        };
        method.check().is_ok()
            && (method.warmup_secs + method.pass_secs + method.cooldown_secs > 0.05
                || method.runs > 100
                || method.warmup_runs > 100
                || method.passes > 3
                || method.min_sample_secs > 0.001)
    }

    #[test]
    fn fuzz_random_and_mutated_requests_are_answered_or_rejected_never_fatal() {
        let key: OpKey = "pool/7x7x16".parse().unwrap();
        let net = latency_tables::Network::new(vec![
            "stem/16x16x3/o8/k3/s2/relu".parse().unwrap(),
            "pool/8x8x8".parse().unwrap(),
        ]);
        let m = Method { passes: 1, cooldown_secs: 0.0, ..quick() };
        let valid: Vec<Vec<u8>> = [
            Request::Info,
            Request::Measure { id: 1, pass: 0, keys: vec![key.clone()], method: m.clone() },
            Request::MeasureNetwork { id: 2, network: net, method: m.clone() },
            Request::Measure {
                id: u64::MAX,
                pass: u32::MAX,
                keys: vec!["stem/100000x100000x3/o32/k3/s2/relu".parse().unwrap()],
                method: m.clone(),
            },
        ]
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
        let extremes = [
            r#"{"runs":4294967295}"#,
            r#"{"runs":0}"#,
            r#"{"pass_secs":1e308}"#,
            r#"{"cooldown_secs":-1}"#,
            r#"{"passes":1000}"#,
            r#"{"threads":0}"#,
            r#"{"canary_every":4294967295}"#,
        ];
        let mut stream = latency_tables::onnx::SeededWeights::new(11);
        let mut next = move || stream.next_u64();
        let engine = FakeEngine { ns_per_byte: 0.0001, fail_modulo: 0 };
        let placement = Placement { cpus: vec![], thermal_limit_c: 200.0 };
        let mut seen = [0usize; 4];
        for case in 0..200 {
            let mut input = frame(&hello());
            for _ in 0..1 + next() % 6 {
                let base = valid[(next() % valid.len() as u64) as usize].clone();
                let payload = match next() % 6 {
                    // Random bytes, framed with a good CRC.
                    0 => (0..next() % 64).map(|_| next() as u8).collect(),
                    // Truncated.
                    1 => base[..(next() % base.len() as u64) as usize].to_vec(),
                    // A byte inserted or replaced.
                    2 | 3 => {
                        let mut p = base.clone();
                        let at = (next() % p.len() as u64) as usize;
                        const BYTES: &[u8] = b"0123456789{}[]\",:-.e\\x\0";
                        let b = BYTES[(next() % BYTES.len() as u64) as usize];
                        if next() % 2 == 0 {
                            p.insert(at, b);
                        } else {
                            p[at] = b;
                        }
                        p
                    }
                    // A method with an extreme value.
                    4 => {
                        let field = extremes[(next() % extremes.len() as u64) as usize];
                        let text = format!(
                            r#"{{"type":"measure","id":9,"pass":0,"keys":["pool/7x7x8"],"method":{field}}}"#
                        );
                        text.into_bytes()
                    }
                    // A whole frame with a bad CRC, or raw garbage between frames.
                    _ => {
                        let mut f = encode_frame(&base);
                        let at = (next() % f.len() as u64) as usize;
                        f[at] ^= 1 << (next() % 8);
                        input.extend(f);
                        continue;
                    }
                };
                if slow(&payload) {
                    continue;
                }
                input.extend(encode_frame(&payload));
            }
            input.extend(frame(&Request::Shutdown));
            let mut out = Vec::new();
            let served =
                serve(&engine, &Fingerprint::default(), &placement, &mut &input[..], &mut out);
            assert!(served.is_ok(), "case {case}: {served:?}");
            // Every answer is a well-formed response, and the session ended with Bye (unless
            // the shutdown frame itself was swallowed by an earlier oversized length).
            let mut d = Decoder::new();
            d.push(&out);
            let answers: Vec<Response> = std::iter::from_fn(|| d.next_frame())
                .map(|p| serde_json::from_slice(&p).unwrap_or_else(|e| panic!("case {case}: {e}")))
                .collect();
            assert!(matches!(answers.first(), Some(Response::Hello { .. })), "case {case}");
            for a in &answers {
                match a {
                    Response::Measured { timing, .. } => {
                        let s = &timing.samples_us;
                        assert!(!s.is_empty() && s.iter().all(|s| s.is_finite()));
                        seen[0] += 1;
                    }
                    Response::Failed { .. } => seen[1] += 1,
                    Response::Error { message } if message.contains("refusing the method") => {
                        seen[2] += 1
                    }
                    Response::Error { .. } => seen[3] += 1,
                    _ => {}
                }
            }
        }
        // The cases reached every path: measured, failed keys (the out-of-bounds key), refused
        // methods, and malformed requests.
        assert!(seen.iter().all(|&n| n > 0), "measured, failed, refused, malformed: {seen:?}");
    }
}
