//! Webhook signatures: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256>`) and GitHub's `X-Hub-Signature-256`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a secret is not usable. Never quotes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("it must start with `whsec_`")]
    Prefix,
    #[error("the part after `whsec_` is not base64")]
    Base64,
    #[error("the key must be 24 to 64 bytes")]
    Length,
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes).
pub fn decode_standard_secret(secret: &str) -> Result<Vec<u8>, SecretFormatError> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or(SecretFormatError::Prefix)?;
    let key = STANDARD
        .decode(b64)
        .map_err(|_| SecretFormatError::Base64)?;
    if !(24..=64).contains(&key.len()) {
        return Err(SecretFormatError::Length);
    }
    Ok(key)
}

type HmacSha256 = Hmac<Sha256>;

/// How far a `webhook-timestamp` may be from the receiver's clock, either way (the
/// Standard Webhooks reference libraries use five minutes).
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// Longest `webhook-id` / `X-GitHub-Delivery` accepted (it becomes part of a store key).
pub const MAX_WEBHOOK_ID_LEN: usize = 256;
/// Most signatures examined in one `webhook-signature` header (rotation needs two).
const MAX_SIGNATURES: usize = 16;

/// Why a delivery does not verify. Never quotes a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("{0} is not valid")]
    InvalidHeader(&'static str),
    #[error("webhook-timestamp is outside the accepted window (±5 minutes)")]
    TimestampOutOfWindow,
    #[error("no signature matches")]
    NoMatch,
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn standard_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` value (`v1,<base64>`) of a Standard Webhooks delivery.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = standard_mac(key, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Checks a `webhook-id` (printable ASCII, no spaces, at most [`MAX_WEBHOOK_ID_LEN`]).
pub fn check_webhook_id(id: &str) -> Result<(), VerifyError> {
    if id.is_empty() || id.len() > MAX_WEBHOOK_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(VerifyError::InvalidHeader("webhook-id"));
    }
    Ok(())
}

/// Verifies a Standard Webhooks delivery: the timestamp is within ±[`TOLERANCE_SECS`]
/// of `now` and one of the space-separated `v1,` signatures is the HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under one of `keys` (rotation). Signatures of other versions
/// are ignored. Comparison is constant-time (`Mac::verify_slice`).
pub fn verify_standard(
    keys: &[Vec<u8>],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    check_webhook_id(id)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidHeader("webhook-timestamp"))?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(VerifyError::TimestampOutOfWindow);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter(|s| !s.is_empty())
        .take(MAX_SIGNATURES)
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoMatch);
    }
    for key in keys {
        let m = standard_mac(key, id, timestamp.trim(), body);
        for sig in &candidates {
            if m.clone().verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatch)
}

/// The `X-Hub-Signature-256` value (`sha256=<hex>`) of a GitHub-style delivery.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// The replay id of a GitHub-style delivery: `sha256:` + the hex SHA-256 of the signed
/// body. `X-GitHub-Delivery` is not covered by the signature (anyone may change it), so
/// the signed bytes themselves identify the delivery: the same body is the same change,
/// whatever the header says. (The envelope's `occurred_at` makes two real changes differ.)
pub fn github_replay_id(body: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Verifies `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` under one of
/// `secrets` (used as given, as GitHub does). Constant-time comparison.
pub fn verify_github(secrets: &[&[u8]], header: &str, body: &[u8]) -> Result<(), VerifyError> {
    let sig = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::InvalidHeader("X-Hub-Signature-256"))?;
    for secret in secrets {
        let mut m = mac(secret);
        m.update(body);
        if m.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official vector of the Standard Webhooks reference libraries
    // (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
    // `test_sign_function`).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1614265330;
    const SW_BODY: &str = r#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key() -> Vec<u8> {
        decode_standard_secret(SW_SECRET).unwrap()
    }

    #[test]
    fn standard_vector_signs_and_verifies() {
        assert_eq!(
            sign_standard(&key(), SW_ID, SW_TS, SW_BODY.as_bytes()),
            SW_SIG
        );
        let ts = SW_TS.to_string();
        assert_eq!(
            verify_standard(&[key()], SW_ID, &ts, SW_SIG, SW_BODY.as_bytes(), SW_TS),
            Ok(())
        );
    }

    #[test]
    fn standard_rejects_tampering_and_bad_signatures() {
        let ts = SW_TS.to_string();
        let v = |sig: &str, body: &str, id: &str| {
            verify_standard(&[key()], id, &ts, sig, body.as_bytes(), SW_TS)
        };
        // The reference tests' "invalid signature" (two characters changed).
        assert_eq!(
            v(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                SW_BODY,
                SW_ID
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v(SW_SIG, r#"{"test": 2432232315}"#, SW_ID),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(v(SW_SIG, SW_BODY, "msg_other"), Err(VerifyError::NoMatch));
        assert_eq!(v("", SW_BODY, SW_ID), Err(VerifyError::NoMatch));
        assert_eq!(
            v("v1,not base64!", SW_BODY, SW_ID),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v(SW_SIG, SW_BODY, ""),
            Err(VerifyError::InvalidHeader("webhook-id"))
        );
        // Another key does not verify.
        let other =
            decode_standard_secret("whsec_dGhpcyBpcyBhbm90aGVyIGtleSBvZiAyNCsgYnl0ZXM=").unwrap();
        assert_eq!(
            verify_standard(
                std::slice::from_ref(&other),
                SW_ID,
                &ts,
                SW_SIG,
                SW_BODY.as_bytes(),
                SW_TS
            ),
            Err(VerifyError::NoMatch)
        );
        // ... but key rotation: any of the keys may verify.
        assert_eq!(
            verify_standard(
                &[other, key()],
                SW_ID,
                &ts,
                SW_SIG,
                SW_BODY.as_bytes(),
                SW_TS
            ),
            Ok(())
        );
    }

    #[test]
    fn standard_several_signatures_unknown_versions_ignored() {
        // As the reference tests' `test_multi_sig_payload_is_valid`.
        let header = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SW_SIG} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        let ts = SW_TS.to_string();
        assert_eq!(
            verify_standard(&[key()], SW_ID, &ts, &header, SW_BODY.as_bytes(), SW_TS),
            Ok(())
        );
        // The right bytes under an unknown version are not a v1 signature.
        let v2 = SW_SIG.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify_standard(&[key()], SW_ID, &ts, &v2, SW_BODY.as_bytes(), SW_TS),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn standard_timestamp_window() {
        let ts = SW_TS.to_string();
        let at = |now: i64| verify_standard(&[key()], SW_ID, &ts, SW_SIG, SW_BODY.as_bytes(), now);
        assert_eq!(at(SW_TS + TOLERANCE_SECS), Ok(()));
        assert_eq!(at(SW_TS - TOLERANCE_SECS), Ok(()));
        assert_eq!(
            at(SW_TS + TOLERANCE_SECS + 1),
            Err(VerifyError::TimestampOutOfWindow)
        );
        assert_eq!(
            at(SW_TS - TOLERANCE_SECS - 1),
            Err(VerifyError::TimestampOutOfWindow)
        );
        assert_eq!(
            verify_standard(&[key()], SW_ID, "hello", SW_SIG, SW_BODY.as_bytes(), SW_TS),
            Err(VerifyError::InvalidHeader("webhook-timestamp"))
        );
    }

    // GitHub's "Validating webhook deliveries" test values: secret
    // "It's a Secret to Everybody", payload "Hello, World!".
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_BODY: &str = "Hello, World!";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_replay_id_is_the_body_hash() {
        // sha256("Hello, World!") = dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f
        assert_eq!(
            github_replay_id(GH_BODY.as_bytes()),
            "sha256:dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f"
        );
        assert_ne!(github_replay_id(b"a"), github_replay_id(b"b"));
        assert!(check_webhook_id(&github_replay_id(b"a")).is_ok());
    }

    #[test]
    fn github_vector_signs_and_verifies() {
        assert_eq!(
            sign_github(GH_SECRET.as_bytes(), GH_BODY.as_bytes()),
            GH_SIG
        );
        assert_eq!(
            verify_github(&[GH_SECRET.as_bytes()], GH_SIG, GH_BODY.as_bytes()),
            Ok(())
        );
        assert_eq!(
            verify_github(&[GH_SECRET.as_bytes()], GH_SIG, b"Hello, World?"),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_github(&[b"another secret"], GH_SIG, GH_BODY.as_bytes()),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_github(&[GH_SECRET.as_bytes()], "sha1=abc", GH_BODY.as_bytes()),
            Err(VerifyError::InvalidHeader("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify_github(&[GH_SECRET.as_bytes()], "sha256=zz", GH_BODY.as_bytes()),
            Err(VerifyError::InvalidHeader("X-Hub-Signature-256"))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NOW: i64 = 1_737_028_800;

        fn arb_key() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(any::<u8>(), 24..=64)
        }

        fn arb_id() -> impl Strategy<Value = String> {
            "[!-~]{1,64}"
        }

        /// One thing changed in a correctly signed delivery.
        #[derive(Clone, Debug)]
        enum Tamper {
            BodyByte(prop::sample::Index, u8),
            BodyAppended(u8),
            Id(String),
            Timestamp(i64),
            Key(Vec<u8>),
            SignatureBit(prop::sample::Index, u8),
        }

        fn arb_tamper() -> impl Strategy<Value = Tamper> {
            prop_oneof![
                (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Tamper::BodyByte(i, x)),
                any::<u8>().prop_map(Tamper::BodyAppended),
                arb_id().prop_map(Tamper::Id),
                (-TOLERANCE_SECS..=TOLERANCE_SECS)
                    .prop_filter("moved", |d| *d != 0)
                    .prop_map(Tamper::Timestamp),
                arb_key().prop_map(Tamper::Key),
                (any::<prop::sample::Index>(), 0u8..8)
                    .prop_map(|(i, b)| Tamper::SignatureBit(i, b)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// What a sender signs verifies, anywhere in the window, among other
            /// signatures and keys (rotation).
            #[test]
            fn signed_deliveries_verify(
                key in arb_key(), other in arb_key(), id in arb_id(),
                body in prop::collection::vec(any::<u8>(), 0..2048),
                skew in -TOLERANCE_SECS..=TOLERANCE_SECS,
            ) {
                let sig = sign_standard(&key, &id, NOW, &body);
                let noise = sign_standard(&other, &id, NOW, &body);
                let header = format!("v2,abc {noise} {sig}");
                let ts = NOW.to_string();
                prop_assert_eq!(verify_standard(&[other.clone(), key.clone()], &id, &ts, &header, &body, NOW + skew), Ok(()));
                prop_assert_eq!(verify_github(&[other.as_slice(), key.as_slice()], &sign_github(&key, &body), &body), Ok(()));
            }

            /// Change any one thing of a signed delivery and it is refused.
            #[test]
            fn a_tampered_delivery_is_refused(
                key in arb_key(), id in arb_id(),
                body in prop::collection::vec(any::<u8>(), 0..512),
                tamper in arb_tamper(),
            ) {
                let sig = sign_standard(&key, &id, NOW, &body);
                let (mut k, mut i, mut ts, mut b) = (key.clone(), id.clone(), NOW, body.clone());
                let mut raw_sig = STANDARD.decode(&sig[3..]).unwrap();
                let mut gh = hex::decode(&sign_github(&key, &body)[7..]).unwrap();
                match &tamper {
                    Tamper::BodyByte(at, x) if !b.is_empty() => {
                        let at = at.index(b.len());
                        b[at] ^= x;
                    }
                    Tamper::BodyByte(_, x) | Tamper::BodyAppended(x) => b.push(*x),
                    Tamper::Id(other) => {
                        prop_assume!(*other != id);
                        i = other.clone();
                    }
                    Tamper::Timestamp(d) => ts += d,
                    Tamper::Key(other) => {
                        prop_assume!(*other != key);
                        k = other.clone();
                    }
                    Tamper::SignatureBit(at, bit) => {
                        let at = at.index(raw_sig.len());
                        raw_sig[at] ^= 1 << bit;
                        gh[at] ^= 1 << bit;
                    }
                }
                let header = format!("v1,{}", STANDARD.encode(&raw_sig));
                let r = verify_standard(std::slice::from_ref(&k), &i, &ts.to_string(), &header, &b, NOW);
                prop_assert_eq!(r, Err(VerifyError::NoMatch), "{:?}", tamper);
                let gh_header = format!("sha256={}", hex::encode(&gh));
                let body_or_key_or_sig = !matches!(tamper, Tamper::Id(_) | Tamper::Timestamp(_));
                if body_or_key_or_sig {
                    prop_assert_eq!(verify_github(&[k.as_slice()], &gh_header, &b), Err(VerifyError::NoMatch));
                }
            }

            /// Headers that were never a signature: refused, never a panic.
            #[test]
            fn arbitrary_headers_never_verify(
                key in arb_key(), id in any::<String>(), ts in any::<String>(),
                sigs in prop_oneof![any::<String>(), "(v1,[A-Za-z0-9+/=]{0,60} ?){0,20}"],
                body in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                prop_assert!(verify_standard(std::slice::from_ref(&key), &id, &ts, &sigs, &body, NOW).is_err());
                prop_assert!(verify_github(&[key.as_slice()], &sigs, &body).is_err());
            }

            /// A signature of the right shape but not the right value: refused.
            #[test]
            fn forged_signatures_are_refused(
                key in arb_key(), id in arb_id(), forged in prop::array::uniform32(any::<u8>()),
                body in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                let header = format!("v1,{}", STANDARD.encode(forged));
                prop_assert_eq!(verify_standard(std::slice::from_ref(&key), &id, &NOW.to_string(), &header, &body, NOW), Err(VerifyError::NoMatch));
                let gh = format!("sha256={}", hex::encode(forged));
                prop_assert_eq!(verify_github(&[key.as_slice()], &gh, &body), Err(VerifyError::NoMatch));
            }

            /// Secrets: `whsec_` + base64 of 24 to 64 bytes decodes to those bytes;
            /// anything else is refused, never a panic.
            #[test]
            fn secrets_decode_or_are_refused(key in prop::collection::vec(any::<u8>(), 0..100), junk in any::<String>()) {
                let secret = format!("whsec_{}", STANDARD.encode(&key));
                match decode_standard_secret(&secret) {
                    Ok(k) => prop_assert_eq!(k, key),
                    Err(e) => prop_assert!(!(24..=64).contains(&key.len()), "{}", e),
                }
                let _ = decode_standard_secret(&junk);
            }
        }
    }
}
