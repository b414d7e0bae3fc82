//! The protocol server: framed JSON requests in, framed JSON responses out, over any byte
//! stream (stdio, a serial port, a TCP connection).
//!
//! A malformed or unknown request gets an `Error` response and the agent keeps serving; a key
//! that fails to build or run is that key's `Failed` response; a host of another protocol
//! version gets an `Error` naming both versions.

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
            Request::Measure { method, .. } | Request::MeasureNetwork { method, .. }
                if method.check().is_err() =>
            {
                let why = method.check().err().map(|e| e.to_string()).unwrap_or_default();
                send(&Response::Error { message: format!("refusing the method: {why}") }, output)?;
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
                            Ok(t) => Response::Measured {
                                id,
                                pass: Some(pass),
                                subject: Subject::Key(key.clone()),
                                samples_us: t.samples_us,
                                batch: t.batch,
                                throttled: t.throttled,
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
                    Ok(t) => Response::Measured {
                        id,
                        pass: None,
                        subject,
                        samples_us: t.samples_us,
                        batch: t.batch,
                        throttled: t.throttled,
                    },
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
        measure::log_line(&format!("rejected input: {rejected:?}"));
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
        Method {
            warmup_runs: 1,
            warmup_secs: 0.0,
            runs: 3,
            pass_secs: 0.0,
            min_sample_secs: 0.0,
            canary_every: 0,
            ..Method::default()
        }
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
            matches!(&r[4], Response::Measured { id: 7, pass: Some(0), samples_us, .. } if !samples_us.is_empty())
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
}
