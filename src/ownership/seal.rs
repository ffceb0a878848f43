//! The tokens the service hands out about owned resources: the page tokens
//! of its own lists (routes/listing.rs) and the upload ids of its upload URLs
//! (routes/upload.rs). Each carries something of Gemini's a client must not
//! read or forge (a page token that may name another client's resource, an
//! upload id that would let chunks skip the service), so it is sealed:
//! encrypted and authenticated with a secret derived from the server keys (the
//! same on every replica that has the same keys, known to no client).
//!
//! HMAC-SHA-256 does both jobs, keyed with that secret: in counter mode as the
//! keystream, and over the nonce and ciphertext as the tag (encrypt, then
//! MAC). It is written here rather than taken from an AEAD crate because the
//! one digest generation the HTTP stack already brings (sha2 0.11) suffices,
//! and a second generation of RustCrypto crates would come with one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

const PREFIX: &str = "gp2.";
const NONCE: usize = 12;
const TAG: usize = 16;
const BLOCK: usize = 64;

/// The secret tokens are sealed with.
#[derive(Clone)]
pub struct Sealer([u8; 32]);

impl Sealer {
    /// From the server keys, in any order.
    pub fn from_keys<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Sealer {
        let mut keys: Vec<&[u8]> = keys.collect();
        keys.sort_unstable();
        let mut digest = Sha256::new();
        digest.update(b"gemini-proxy page tokens v2");
        for key in keys {
            digest.update((key.len() as u64).to_be_bytes());
            digest.update(key);
        }
        Sealer(digest.finalize().into())
    }

    pub fn seal(&self, plain: &[u8]) -> String {
        let nonce: [u8; NONCE] = std::array::from_fn(|_| fastrand::u8(..));
        let mut sealed = nonce.to_vec();
        sealed.extend(self.xor_keystream(&nonce, plain));
        let tag = self.mac(&[b"tag", &sealed]);
        sealed.extend_from_slice(&tag[..TAG]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plain text, or `None` for a token this secret did not seal.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        let body_end = sealed.len().checked_sub(TAG)?;
        if body_end < NONCE {
            return None;
        }
        let (body, tag) = sealed.split_at(body_end);
        let expected = self.mac(&[b"tag", body]);
        // Constant time: a forger learns nothing from how long a refusal took.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..TAG], tag)) {
            return None;
        }
        let (nonce, cipher) = body.split_at(NONCE);
        Some(self.xor_keystream(nonce, cipher))
    }

    fn xor_keystream(&self, nonce: &[u8], data: &[u8]) -> Vec<u8> {
        data.chunks(32)
            .enumerate()
            .flat_map(|(counter, chunk)| {
                let block = self.mac(&[b"stream", nonce, &(counter as u64).to_be_bytes()]);
                chunk
                    .iter()
                    .zip(block)
                    .map(|(b, k)| b ^ k)
                    .collect::<Vec<u8>>()
            })
            .collect()
    }

    /// HMAC-SHA-256 (RFC 2104) of the concatenated parts.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner_pad = [0x36u8; BLOCK];
        let mut outer_pad = [0x5cu8; BLOCK];
        for (i, byte) in self.0.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let mut inner = Sha256::new();
        inner.update(inner_pad);
        for part in parts {
            inner.update(part);
        }
        let inner = inner.finalize();
        let mut outer = Sha256::new();
        outer.update(outer_pad);
        outer.update(inner);
        outer.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_the_same_keys_and_hides_its_content() {
        let sealer = Sealer::from_keys([b"k1".as_slice(), b"k2".as_slice()].into_iter());
        let plain = b"0123456789abcdef:CiBmaWxlcy9hYmMxMjM=".to_vec();
        let token = sealer.seal(&plain);
        assert!(!token.contains("CiBmaWxl"), "{token}");
        assert_eq!(sealer.open(&token), Some(plain.clone()));
        // Another replica with the same keys, given in another order.
        let same = Sealer::from_keys([b"k2".as_slice(), b"k1".as_slice()].into_iter());
        assert_eq!(same.open(&token), Some(plain));
        let other = Sealer::from_keys([b"k3".as_slice()].into_iter());
        assert_eq!(other.open(&token), None);
        // Tampering with any byte is refused.
        let mut raw = URL_SAFE_NO_PAD.decode(&token[4..]).unwrap();
        raw[NONCE] ^= 1;
        assert_eq!(
            sealer.open(&format!("gp2.{}", URL_SAFE_NO_PAD.encode(&raw))),
            None
        );
        for junk in ["", "gp2.", "gp2.AAAA", "gp1.abc", "not a token"] {
            assert_eq!(sealer.open(junk), None, "{junk}");
        }
        // Two seals of one text differ (a fresh nonce each).
        assert_ne!(sealer.seal(b"x"), sealer.seal(b"x"));
    }

    #[test]
    fn the_hmac_is_rfc_4231s() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, so check
        // the construction against a key padded as HMAC pads it.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = Sealer(key).mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
