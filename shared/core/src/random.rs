//! Random identifiers and secrets, drawn from the operating system's CSPRNG.

/// The 62 characters every identifier and secret is written in.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` base62 characters from the OS CSPRNG, without modulo bias: bytes of 248 and
/// above (248 = 4 × 62) are thrown away and drawn again.
///
/// # Panics
/// When the operating system cannot provide randomness at all; there is no safe way to
/// mint a secret then, and the runtime turns the panic into a failed request.
pub fn base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut buf).expect("the OS CSPRNG is unavailable");
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(b % 62)] as char);
        }
    }
    out
}

/// Whether `s` is exactly `len` base62 characters.
pub fn is_base62(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_requested_length_from_the_alphabet() {
        let s = base62(32);
        assert!(is_base62(&s, 32), "{s}");
        assert_ne!(base62(32), s, "two draws of 190 bits never collide");
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        let s = base62(20_000);
        for c in ALPHABET {
            assert!(s.as_bytes().contains(c), "missing {}", *c as char);
        }
    }
}
