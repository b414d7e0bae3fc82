//! The wire protocol between the host and a device agent: message types and version.
//!
//! Messages are JSON objects tagged by `"type"`. The first exchange is always `Hello` in both
//! directions; an agent refuses any other protocol version with an `Error` response and the
//! host stops with a message naming both versions. Framing (length-bounded, checksummed frames
//! over a byte stream) is defined next to these types by the transport layer.

use serde::{Deserialize, Serialize};

use crate::meta::{Fingerprint, Method};
use crate::network::Network;
use crate::op_key::OpKey;
use crate::timing::Timing;

/// The protocol version spoken by this build. Bump on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 2;

/// A request from the host to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Opens a session; the agent answers `Hello` or an `Error` naming both versions.
    Hello {
        /// The host's protocol version.
        protocol: u32,
        /// Free-form name and version of the host.
        client: String,
    },
    /// Asks for the device fingerprint.
    Info,
    /// Measures op keys for one pass of the method (warm-up, then timed samples); one
    /// `Measured` or `Failed` response per key, `Progress` heartbeats in between, then `Done`.
    /// The host runs `method.passes` passes, rotating the key order between them. A method that
    /// fails `Method::check`, or a canary the agent cannot build, is answered with `Error`.
    Measure {
        /// Request id, echoed in every response it causes.
        id: u64,
        /// Which pass this is (echoed; also selects the canary's baseline).
        pass: u32,
        /// The keys, measured in this order.
        keys: Vec<OpKey>,
        /// How to measure.
        method: Method,
    },
    /// Builds a whole network on the device and measures it end to end (all passes of the
    /// method, back to back); one `Measured` or `Failed`, then `Done`.
    MeasureNetwork {
        /// Request id.
        id: u64,
        /// The network.
        network: Network,
        /// How to measure.
        method: Method,
    },
    /// Ends the session; the agent answers `Bye` and stops serving this connection.
    Shutdown,
}

/// What a measurement was of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// One op key.
    Key(OpKey),
    /// A whole network (by its number of layers and a digest of its keys).
    Network {
        /// Layers in the network.
        layers: usize,
        /// The canonical keys joined by `;`, hashed (FNV-1a 64, hex).
        digest: String,
    },
}

/// A response from the agent to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Answer to `Hello`.
    Hello {
        /// The agent's protocol version.
        protocol: u32,
        /// Agent name and version.
        agent: String,
        /// The device fingerprint.
        fingerprint: Fingerprint,
    },
    /// Answer to `Info`.
    Info {
        /// The device fingerprint.
        fingerprint: Fingerprint,
    },
    /// One finished measurement: the timed samples of one pass (or of all passes, for a
    /// network). Each sample is the mean time of `batch` back-to-back runs, in µs.
    Measured {
        /// The request id.
        id: u64,
        /// The pass (echoed from the request; `None` for a whole network).
        pass: Option<u32>,
        /// What was measured.
        subject: Subject,
        /// The samples, and what the canary and the throttling flags saw.
        timing: Timing,
    },
    /// One measurement that failed (the agent keeps serving).
    Failed {
        /// The request id.
        id: u64,
        /// What failed.
        subject: Subject,
        /// Why.
        error: String,
    },
    /// A heartbeat while a request is worked on: after every key timed, every canary, every
    /// second of a cool-down, and every pass of a network. The host's timeout is per message,
    /// so this is what keeps a long group alive.
    Progress {
        /// The request id.
        id: u64,
        /// Units of work done (keys timed, re-measurements included; passes of a network).
        done: u64,
        /// Units of work in the request (keys; passes of a network).
        total: u64,
    },
    /// All responses of request `id` have been sent.
    Done {
        /// The request id.
        id: u64,
    },
    /// A request that could not be understood or served (malformed, unknown, wrong version).
    Error {
        /// What was wrong.
        message: String,
    },
    /// Answer to `Shutdown`.
    Bye,
}

/// FNV-1a 64-bit digest of a network's canonical keys, used as its identity on the wire.
pub fn network_digest(network: &Network) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, key) in network.layers.iter().enumerate() {
        if i > 0 {
            hash = fnv_step(hash, b';');
        }
        for b in key.to_string().bytes() {
            hash = fnv_step(hash, b);
        }
    }
    format!("{hash:016x}")
}

fn fnv_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let key: OpKey = "pool/7x7x1280".parse().unwrap();
        let reqs = vec![
            Request::Hello { protocol: PROTOCOL_VERSION, client: "tunas 0.0.0".into() },
            Request::Info,
            Request::Measure { id: 3, pass: 0, keys: vec![key.clone()], method: Method::default() },
            Request::MeasureNetwork {
                id: 4,
                network: Network::new(vec![key.clone()]),
                method: Method::default(),
            },
            Request::Shutdown,
        ];
        for r in reqs {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        }
        let text = serde_json::to_string(&Request::Info).unwrap();
        assert_eq!(text, r#"{"type":"info"}"#);
        let resp = Response::Measured {
            id: 3,
            pass: Some(1),
            subject: Subject::Key(key),
            timing: Timing {
                samples_us: vec![1.5, 2.25],
                batch: 4,
                redos: 1,
                canary_drift: Some(0.02),
                ..Timing::default()
            },
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
    }

    #[test]
    fn unknown_messages_are_errors() {
        assert!(serde_json::from_str::<Request>(r#"{"type":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"type":"hello","protocol":1,"client":"h","x":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Request>(r#"{"type":"hello","protocol":1}"#).is_err());
    }

    #[test]
    fn digest_depends_on_every_key() {
        let a = Network::new(vec!["pool/7x7x1280".parse().unwrap()]);
        let b = Network::new(vec!["pool/7x7x1024".parse().unwrap()]);
        assert_ne!(network_digest(&a), network_digest(&b));
        assert_eq!(network_digest(&a).len(), 16);
    }
}
